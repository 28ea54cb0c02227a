# syntax=docker/dockerfile:1
#
# corsauthz container image: a static binary on distroless, running as the
# unprivileged user 65532 ("nonroot"). Building, pushing and running it:
# docs/operations-and-limits.md ("Container image").
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#       --build-arg REVISION=$(git rev-parse HEAD) -t corsauthz:dev .
#   docker run --rm -p 127.0.0.1:9001:9001 -p 127.0.0.1:9002:9002 -p 127.0.0.1:9003:9003 corsauthz:dev
#
# The image holds the example policies at /etc/corsauthz/corsauthz.yaml; mount
# your own file (or, on Kubernetes, a ConfigMap directory) over that path.

# ---- build -------------------------------------------------------------------
# Build on the host's platform and cross-compile, so `docker buildx build
# --platform linux/amd64,linux/arm64` needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
# What `corsauthz version` and the corsauthz_build_info metric say: the
# build context has no .git (.dockerignore), so the go command cannot record
# the commit itself.
ARG VERSION=devel
ARG REVISION=unknown
WORKDIR /src

# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w -X github.com/corsauthz/corsauthz/internal/cli.version=${VERSION} -X github.com/corsauthz/corsauthz/internal/cli.revision=${REVISION}" \
      -o /out/corsauthz ./cmd/corsauthz

# ---- run ---------------------------------------------------------------------
# static-debian12: CA certificates, /etc/passwd and tzdata, no shell, no
# package manager. The :nonroot tag runs as 65532 by default; USER below says
# so explicitly, numerically, so Kubernetes' runAsNonRoot can verify it.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/corsauthz /corsauthz
COPY deploy/corsauthz.yaml /etc/corsauthz/corsauthz.yaml
USER 65532:65532
# 9001: gRPC (ext_authz Check, the decision API, xDS, grpc.health.v1, reflection).
# 9002: HTTP admin (/healthz, /readyz, /metrics).
# 9003: HTTP authorization (NGINX auth_request, Envoy's http_service).
EXPOSE 9001 9002 9003
ENTRYPOINT ["/corsauthz"]
# The defaults listen on 127.0.0.1, unreachable from outside a container, so
# the image listens on every interface. The flags can also be set through
# CORSAUTHZ_GRPC_ADDR, CORSAUTHZ_ADMIN_ADDR and CORSAUTHZ_HTTP_ADDR.
CMD ["serve", "--config", "/etc/corsauthz/corsauthz.yaml", "--grpc-addr", "0.0.0.0:9001", "--admin-addr", "0.0.0.0:9002", "--http-addr", "0.0.0.0:9003"]
