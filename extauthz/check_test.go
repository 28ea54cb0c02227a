package extauthz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/extauthz"
	"github.com/corsauthz/corsauthz/internal/limits"
	th "github.com/corsauthz/corsauthz/internal/testharness"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/codes"
	grpcmetadata "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// checkCases are the decisions the ext_authz mapping must render, each
// with the exact CheckResponse Envoy gets (docs/envoy.md).
var checkCases = []struct {
	desc string
	req  *authv3.CheckRequest
	want *authv3.CheckResponse
}{{
	desc: "no Origin, a policy with credentials: pass on with Vary: Origin, for caches",
	req:  th.CheckRequest("GET", "api.example.com", "/v1/orders", th.Hdrs{"accept": "*/*"}, ""),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "no Origin, a reject_disallowed_origins policy: pass on with Vary: Origin",
	req:  th.CheckRequest("POST", "strict.example.com", "/", nil, ""),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "no Origin, a * policy without credentials: Access-Control-Allow-Origin: * and Expose-Headers, no Vary",
	req:  th.CheckRequest("GET", "open.example.com", "/", th.Hdrs{"accept": "*/*"}, ""),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "*"), th.Set("Access-Control-Expose-Headers", "X-Total")),
}, {
	desc: "no Origin, a * policy named by cors_policy: Access-Control-Allow-Origin: *",
	req:  th.CheckRequest("GET", "api.example.com", "/", nil, "public"),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "*")),
}, {
	desc: "no Origin, a report_only policy: pass on untouched",
	req:  th.CheckRequest("GET", "shadow.example.com", "/", nil, ""),
	want: th.OKResponse(),
}, {
	desc: "no Origin, no policy: pass on untouched",
	req:  th.CheckRequest("GET", "other.example.com", "/", th.Hdrs{"accept": "*/*"}, ""),
	want: th.OKResponse(),
}, {
	desc: "OPTIONS with Access-Control-Request-Method but no Origin: not a preflight, Vary: Origin",
	req:  th.CheckRequest("OPTIONS", "api.example.com", "/", th.Hdrs{"access-control-request-method": "PUT"}, ""),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "empty Origin: a CORS request matching no listed origin",
	req:  th.CheckRequest("GET", "api.example.com", "/v1/orders", th.Hdrs{"origin": ""}, ""),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "empty Origin, reject_disallowed_origins: 403",
	req:  th.CheckRequest("GET", "strict.example.com", "/", th.Hdrs{"origin": ""}, ""),
	want: th.DeniedResponse(403, th.AppendTo("Vary", "Origin")),
}, {
	desc: "empty Origin, a * policy: Access-Control-Allow-Origin: *",
	req:  th.CheckRequest("GET", "open.example.com", "/", th.Hdrs{"origin": ""}, ""),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "*"), th.Set("Access-Control-Expose-Headers", "X-Total")),
}, {
	desc: "empty Origin, a preflight: 403",
	req:  th.CheckRequest("OPTIONS", "api.example.com", "/", th.Hdrs{"origin": "", "access-control-request-method": "PUT"}, ""),
	want: th.DeniedResponse(403, th.AppendTo("Vary", th.VaryPreflight)),
}, {
	desc: "header_map: empty Origin is present",
	req:  th.RawCheckRequest("GET", "strict.example.com", "/", [][2]string{{"Origin", ""}}),
	want: th.DeniedResponse(403, th.AppendTo("Vary", "Origin")),
}, {
	desc: "header_map: no Origin, a * policy",
	req:  th.RawCheckRequest("GET", "open.example.com", "/", [][2]string{{"accept", "*/*"}}),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "*"), th.Set("Access-Control-Expose-Headers", "X-Total")),
}, {
	desc: "a group: the app's origin picks the app's policy, with credentials",
	req:  th.CheckRequest("GET", "shared.example.com", "/v1/orders", th.Hdrs{"origin": th.App}, ""),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", th.App), th.Set("Access-Control-Allow-Credentials", "true"), th.AppendTo("Vary", "Origin")),
}, {
	desc: "a group: a partner's origin picks the partners' policy, without credentials",
	req:  th.CheckRequest("GET", "shared.example.com", "/v1?x=1", th.Hdrs{"origin": "https://partner.example.net"}, ""),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "https://partner.example.net"), th.AppendTo("Vary", "Origin")),
}, {
	desc: "a group: an origin neither admits: the first decides",
	req:  th.CheckRequest("GET", "shared.example.com", "/v1/orders", th.Hdrs{"origin": th.Evil}, ""),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "a group: no Origin: Vary: Origin",
	req:  th.CheckRequest("GET", "shared.example.com", "/v1/orders", nil, ""),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "a group whose first is *, no Origin: * and Vary: Origin, as another origin may get the other policy",
	req:  th.CheckRequest("GET", "open.example.com", "/g/x", nil, ""),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "*"), th.AppendTo("Vary", "Origin")),
}, {
	desc: "the same * policy named alone, no Origin: * without Vary (its own shared answer, not the group's)",
	req:  th.CheckRequest("GET", "other.example.com", "/", nil, "open-group"),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "*")),
}, {
	desc: "a group whose first is *: the app's origin is admitted by * first",
	req:  th.CheckRequest("GET", "open.example.com", "/g", th.Hdrs{"origin": th.App}, ""),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "*"), th.AppendTo("Vary", "Origin")),
}, {
	desc: "the same * policy named alone, an origin: * without Vary",
	req:  th.CheckRequest("GET", "other.example.com", "/", th.Hdrs{"origin": th.App}, "open-group"),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "*")),
}, {
	desc: "segment boundary: /v1 does not select /v10",
	req:  th.CheckRequest("GET", "shared.example.com", "/v10", th.Hdrs{"origin": th.App}, ""),
	want: th.OKResponse(),
}, {
	desc: "cors_policy naming a group: the Origin picks",
	req:  th.CheckRequest("GET", "other.example.com", "/", th.Hdrs{"origin": "https://partner.example.net"}, "app, partners"),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "https://partner.example.net"), th.AppendTo("Vary", "Origin")),
}, {
	desc: "cors_policy naming a group, no Origin: Vary: Origin",
	req:  th.CheckRequest("GET", "other.example.com", "/", nil, "app,partners"),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "no policy for the host: pass on, no headers",
	req:  th.CheckRequest("GET", "other.example.com", "/", th.Hdrs{"origin": th.App}, ""),
	want: th.OKResponse(),
}, {
	desc: "allowed actual request",
	req:  th.CheckRequest("GET", "api.example.com", "/v1/orders?id=1", th.Hdrs{"origin": th.App}, ""),
	want: th.OKResponse(
		th.Set("Access-Control-Allow-Origin", th.App),
		th.Set("Access-Control-Allow-Credentials", "true"),
		th.Set("Access-Control-Expose-Headers", "X-Request-Id"),
		th.AppendTo("Vary", "Origin"),
	),
}, {
	desc: "allowed actual request from a wildcard origin, host with port",
	req:  th.CheckRequest("POST", "api.example.com:443", "/v1/orders", th.Hdrs{"origin": "https://pr-7.preview.example.com"}, ""),
	want: th.OKResponse(
		th.Set("Access-Control-Allow-Origin", "https://pr-7.preview.example.com"),
		th.Set("Access-Control-Allow-Credentials", "true"),
		th.Set("Access-Control-Expose-Headers", "X-Request-Id"),
		th.AppendTo("Vary", "Origin"),
	),
}, {
	desc: "OPTIONS without Access-Control-Request-Method is an actual request",
	req:  th.CheckRequest("OPTIONS", "api.example.com", "/v1/orders", th.Hdrs{"origin": th.App}, ""),
	want: th.OKResponse(
		th.Set("Access-Control-Allow-Origin", th.App),
		th.Set("Access-Control-Allow-Credentials", "true"),
		th.Set("Access-Control-Expose-Headers", "X-Request-Id"),
		th.AppendTo("Vary", "Origin"),
	),
}, {
	desc: "disallowed actual request: only Vary",
	req:  th.CheckRequest("GET", "api.example.com", "/v1/orders", th.Hdrs{"origin": th.Evil}, ""),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "allowed preflight: 204 with the headers",
	req: th.CheckRequest("OPTIONS", "api.example.com", "/v1/orders", th.Hdrs{
		"origin":                         th.App,
		"access-control-request-method":  "PUT",
		"access-control-request-headers": "authorization,content-type",
	}, ""),
	want: th.DeniedResponse(204,
		th.Set("Access-Control-Allow-Origin", th.App),
		th.Set("Access-Control-Allow-Methods", "PUT"),
		th.Set("Access-Control-Allow-Headers", "authorization,content-type"),
		th.Set("Access-Control-Allow-Credentials", "true"),
		th.Set("Access-Control-Max-Age", "600"),
		th.AppendTo("Vary", th.VaryPreflight),
	),
}, {
	desc: "allowed preflight asking for private-network access",
	req: th.CheckRequest("OPTIONS", "api.example.com", "/v1/orders", th.Hdrs{
		"origin":                                 th.App,
		"access-control-request-method":          "DELETE",
		"access-control-request-private-network": "true",
	}, ""),
	want: th.DeniedResponse(204,
		th.Set("Access-Control-Allow-Origin", th.App),
		th.Set("Access-Control-Allow-Methods", "DELETE"),
		th.Set("Access-Control-Allow-Credentials", "true"),
		th.Set("Access-Control-Max-Age", "600"),
		th.Set("Access-Control-Allow-Private-Network", "true"),
		th.AppendTo("Vary", th.VaryPreflight),
	),
}, {
	desc: "preflight with a method not allowed: 403, only Vary",
	req: th.CheckRequest("OPTIONS", "api.example.com", "/v1/orders", th.Hdrs{
		"origin":                        th.App,
		"access-control-request-method": "PATCH",
	}, ""),
	want: th.DeniedResponse(403, th.AppendTo("Vary", th.VaryPreflight)),
}, {
	desc: "preflight with a header not allowed: 403, only Vary",
	req: th.CheckRequest("OPTIONS", "api.example.com", "/v1/orders", th.Hdrs{
		"origin":                         th.App,
		"access-control-request-method":  "PUT",
		"access-control-request-headers": "content-type,x-debug",
	}, ""),
	want: th.DeniedResponse(403, th.AppendTo("Vary", th.VaryPreflight)),
}, {
	desc: "preflight from a disallowed origin: 403, only Vary",
	req: th.CheckRequest("OPTIONS", "api.example.com", "/v1/orders", th.Hdrs{
		"origin":                        th.Evil,
		"access-control-request-method": "GET",
	}, ""),
	want: th.DeniedResponse(403, th.AppendTo("Vary", th.VaryPreflight)),
}, {
	desc: "reject_disallowed_origins: actual request from another origin gets 403",
	req:  th.CheckRequest("POST", "strict.example.com", "/", th.Hdrs{"origin": th.Evil}, ""),
	want: th.DeniedResponse(403, th.AppendTo("Vary", "Origin")),
}, {
	desc: "reject_disallowed_origins: allowed origin passes on",
	req:  th.CheckRequest("POST", "strict.example.com", "/", th.Hdrs{"origin": th.App}, ""),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", th.App), th.AppendTo("Vary", "Origin")),
}, {
	desc: "report_only: a rejection passes on untouched",
	req:  th.CheckRequest("POST", "shadow.example.com", "/", th.Hdrs{"origin": th.Evil}, ""),
	want: th.OKResponse(),
}, {
	desc: "report_only: an allowed request passes on untouched",
	req:  th.CheckRequest("GET", "shadow.example.com", "/", th.Hdrs{"origin": th.App}, ""),
	want: th.OKResponse(),
}, {
	desc: "report_only: a preflight passes on untouched",
	req: th.CheckRequest("OPTIONS", "shadow.example.com", "/", th.Hdrs{
		"origin":                        th.App,
		"access-control-request-method": "GET",
	}, ""),
	want: th.OKResponse(),
}, {
	desc: "cors_policy selects a policy the match rules would not",
	req:  th.CheckRequest("GET", "api.example.com", "/v1/orders", th.Hdrs{"origin": "https://anyone.test"}, "public"),
	want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "*")),
}, {
	desc: "cors_policy overrides the match rules",
	req:  th.CheckRequest("GET", "strict.example.com", "/", th.Hdrs{"origin": th.Evil}, "api"),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "cors_policy: preflight on a * policy",
	req: th.CheckRequest("OPTIONS", "files.example.com", "/", th.Hdrs{
		"origin":                        "null",
		"access-control-request-method": "GET",
	}, "public"),
	want: th.DeniedResponse(204,
		th.Set("Access-Control-Allow-Origin", "*"),
		th.Set("Access-Control-Allow-Methods", "GET"),
		th.AppendTo("Vary", th.VaryPreflight),
	),
}, {
	desc: "header_map (encode_raw_headers): allowed preflight, keys in any case",
	req: th.RawCheckRequest("OPTIONS", "api.example.com", "/v1/orders", [][2]string{
		{":authority", "api.example.com"},
		{"Origin", th.App},
		{"access-control-request-method", "PUT"},
		{"Access-Control-Request-Headers", "content-type"},
	}),
	want: th.DeniedResponse(204,
		th.Set("Access-Control-Allow-Origin", th.App),
		th.Set("Access-Control-Allow-Methods", "PUT"),
		th.Set("Access-Control-Allow-Headers", "content-type"),
		th.Set("Access-Control-Allow-Credentials", "true"),
		th.Set("Access-Control-Max-Age", "600"),
		th.AppendTo("Vary", th.VaryPreflight),
	),
}, {
	desc: "header_map: allowed actual request",
	req:  th.RawCheckRequest("GET", "api.example.com", "/", [][2]string{{"origin", th.App}}),
	want: th.OKResponse(
		th.Set("Access-Control-Allow-Origin", th.App),
		th.Set("Access-Control-Allow-Credentials", "true"),
		th.Set("Access-Control-Expose-Headers", "X-Request-Id"),
		th.AppendTo("Vary", "Origin"),
	),
}, {
	desc: "header_map: a repeated Origin is joined, and matches nothing",
	req:  th.RawCheckRequest("GET", "api.example.com", "/", [][2]string{{"origin", th.App}, {"origin", th.App}}),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "header_map: an Origin that is not UTF-8 matches nothing",
	req:  th.RawCheckRequest("GET", "api.example.com", "/", [][2]string{{"origin", "https://app.example.com\xff"}}),
	want: th.OKResponse(th.AppendTo("Vary", "Origin")),
}, {
	desc: "header_map: repeated Access-Control-Request-Headers are joined",
	req: th.RawCheckRequest("OPTIONS", "api.example.com", "/", [][2]string{
		{"origin", th.App},
		{"access-control-request-method", "POST"},
		{"access-control-request-headers", "content-type"},
		{"access-control-request-headers", "authorization"},
	}),
	want: th.DeniedResponse(204,
		th.Set("Access-Control-Allow-Origin", th.App),
		th.Set("Access-Control-Allow-Methods", "POST"),
		th.Set("Access-Control-Allow-Headers", "content-type,authorization"),
		th.Set("Access-Control-Allow-Credentials", "true"),
		th.Set("Access-Control-Max-Age", "600"),
		th.AppendTo("Vary", th.VaryPreflight),
	),
}}

func TestCheck(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	client := ts.Authz()
	for _, tc := range checkCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			got, err := client.Check(th.CtxTimeout(t), tc.req)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			th.AssertProtoEqual(t, got, tc.want)
		})
	}
}

func manyHeaders(n int) th.Hdrs {
	h := make(th.Hdrs, n)
	for i := range n {
		h[fmt.Sprintf("x-h%d", i)] = "v"
	}
	return h
}

func manyRawHeaders(n int) *authv3.CheckRequest {
	req := th.CheckRequest("GET", "api.example.com", "/", nil, "")
	hm := &corev3.HeaderMap{}
	for i := range n {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: fmt.Sprintf("x-h%d", i), RawValue: []byte("v")})
	}
	req.Attributes.Request.Http.HeaderMap = hm
	return req
}

const noHTTP = "CheckRequest has no attributes.request.http: corsauthz decides on HTTP requests (use Envoy's HTTP ext_authz filter, envoy.filters.http.ext_authz, not the network filter)"

var checkErrorCases = []struct {
	desc    string
	req     *authv3.CheckRequest
	code    codes.Code
	message string // exact, or with a leading "~" a substring
}{{
	desc:    "empty request",
	req:     &authv3.CheckRequest{},
	code:    codes.InvalidArgument,
	message: noHTTP,
}, {
	desc:    "attributes without request",
	req:     &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}},
	code:    codes.InvalidArgument,
	message: noHTTP,
}, {
	desc: "request without http (network filter)",
	req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{},
		ContextExtensions: map[string]string{"cors_policy": "api"},
	}},
	code:    codes.InvalidArgument,
	message: noHTTP,
}, {
	desc:    "cors_policy names no configured policy",
	req:     th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, "nope"),
	code:    codes.FailedPrecondition,
	message: `~"nope"`,
}, {
	desc:    "cors_policy names no configured policy, even without Origin",
	req:     th.CheckRequest("GET", "api.example.com", "/", nil, "nope"),
	code:    codes.FailedPrecondition,
	message: `~"nope"`,
}, {
	desc:    "method too long",
	req:     th.CheckRequest(strings.Repeat("A", limits.MethodLen+1), "api.example.com", "/", th.Hdrs{"origin": th.App}, ""),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.method is 65 bytes long, more than the limit of 64",
}, {
	desc:    "host too long",
	req:     th.CheckRequest("GET", strings.Repeat("a", limits.HostLen+1), "/", th.Hdrs{"origin": th.App}, ""),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.host is 8193 bytes long, more than the limit of 8192",
}, {
	desc:    "path too long",
	req:     th.CheckRequest("GET", "api.example.com", "/"+strings.Repeat("a", limits.PathLen), th.Hdrs{"origin": th.App}, ""),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.path is 65537 bytes long, more than the limit of 65536",
}, {
	desc:    "too many headers",
	req:     th.CheckRequest("GET", "api.example.com", "/", manyHeaders(limits.HeaderCount+1), ""),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.headers has more than 1000 entries, the limit",
}, {
	desc:    "too many header_map entries",
	req:     manyRawHeaders(limits.HeaderCount + 1),
	code:    codes.InvalidArgument,
	message: "attributes.request.http.header_map has more than 1000 entries, the limit",
}}

func TestCheckErrors(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	client := ts.Authz()
	for _, tc := range checkErrorCases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			resp, err := client.Check(th.CtxTimeout(t), tc.req)
			if err == nil {
				t.Fatalf("Check returned no error but\n%v", resp)
			}
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Errorf("code = %v, want %v (message %q)", st.Code(), tc.code, st.Message())
			}
			if sub, ok := strings.CutPrefix(tc.message, "~"); ok {
				if !strings.Contains(st.Message(), sub) {
					t.Errorf("message = %q, want it to contain %q", st.Message(), sub)
				}
			} else if st.Message() != tc.message {
				t.Errorf("message = %q\nwant      %q", st.Message(), tc.message)
			}
		})
	}
}

func TestCheckLogs(t *testing.T) {
	t.Parallel()
	holder := policy.NewHolder(th.LoadEngine(t, th.Config))
	for _, tc := range []struct {
		desc  string
		level slog.Level
		req   *authv3.CheckRequest
		want  string // the log output, with the time left out
	}{{
		desc:  "allowed actual request: nothing at info",
		level: slog.LevelInfo,
		req:   th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, ""),
		want:  "",
	}, {
		desc:  "allowed actual request at debug",
		level: slog.LevelDebug,
		req:   th.CheckRequest("GET", "api.example.com", "/v1/orders?token=secret", th.Hdrs{"origin": th.App, "authorization": "Bearer secret"}, ""),
		want:  `level=DEBUG msg="cors decision" front_end=ext_authz policy=api kind=actual_allowed reason=origin_allowed detail="" action=pass report_only=false origin=https://app.example.com method=GET host=api.example.com path=/v1/orders` + "\n",
	}, {
		desc:  "rejected preflight at info",
		level: slog.LevelInfo,
		req:   th.CheckRequest("OPTIONS", "api.example.com", "/", th.Hdrs{"origin": th.App, "access-control-request-method": "PATCH"}, ""),
		want:  `level=INFO msg="preflight rejected" front_end=ext_authz policy=api kind=preflight_rejected reason=method_not_allowed detail=PATCH action=respond status=403 report_only=false origin=https://app.example.com method=OPTIONS host=api.example.com path=/` + "\n",
	}, {
		desc:  "disallowed origin at info, report-only",
		level: slog.LevelInfo,
		req:   th.CheckRequest("GET", "shadow.example.com", "/", th.Hdrs{"origin": th.Evil}, ""),
		want:  `level=INFO msg="origin not allowed" front_end=ext_authz policy=shadow kind=actual_disallowed reason=origin_not_allowed detail="" action=pass status=403 report_only=true origin=https://evil.example method=GET host=shadow.example.com path=/` + "\n",
	}, {
		desc:  "a group's decision names the group",
		level: slog.LevelInfo,
		req:   th.CheckRequest("GET", "shared.example.com", "/v1/orders", th.Hdrs{"origin": th.Evil}, ""),
		want:  `level=INFO msg="origin not allowed" front_end=ext_authz policy=app kind=actual_disallowed reason=origin_not_allowed detail="" action=pass report_only=false origin=https://evil.example method=GET host=shared.example.com path=/v1/orders group="app, partners"` + "\n",
	}, {
		desc:  "no Origin at debug",
		level: slog.LevelDebug,
		req:   th.CheckRequest("GET", "open.example.com", "/", nil, ""),
		want:  `level=DEBUG msg="cors decision" front_end=ext_authz policy=open kind=not_cors reason=no_origin detail="" action=pass report_only=false origin="" method=GET host=open.example.com path=/` + "\n",
	}, {
		desc:  "unreadable request",
		level: slog.LevelInfo,
		req:   &authv3.CheckRequest{},
		want:  `level=WARN msg="request refused: unreadable request" front_end=ext_authz error="` + strings.ReplaceAll(noHTTP, `"`, `\"`) + `"` + "\n",
	}} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level: tc.level,
				ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey && len(groups) == 0 {
						return slog.Attr{}
					}
					return a
				},
			}))
			a := extauthz.New(th.NewCore(t, holder, logger))
			_, _ = a.Check(context.Background(), tc.req)
			if got := buf.String(); got != tc.want {
				t.Errorf("log:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestCheckUnknownPolicyLogs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	engine := th.LoadEngine(t, th.Config)
	a := extauthz.New(th.NewCore(t, policy.NewHolder(engine), logger))
	_, err := a.Check(context.Background(), th.CheckRequest("GET", "api.example.com", "/", nil, "nope"))
	var rec struct {
		Level, Msg, Error string
		ConfigHash        string `json:"config_hash"`
	}
	if jerr := json.Unmarshal(buf.Bytes(), &rec); jerr != nil {
		t.Fatalf("log %q: %v", buf.String(), jerr)
	}
	want := status.Convert(err).Message()
	if rec.Level != "ERROR" || rec.Msg != "request refused: configuration mismatch" || rec.Error != want || rec.ConfigHash != engine.Hash() {
		t.Errorf("log record = %+v, want an ERROR with error %q and the config hash", rec, want)
	}
}

func TestCheckWithoutEngine(t *testing.T) {
	t.Parallel()
	a := extauthz.New(th.NewCore(t, policy.NewHolder(nil), nil))
	_, err := a.Check(context.Background(), th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, ""))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("Check without an engine: err = %v, want code Unavailable", err)
	}
}

// FuzzCheck feeds Check arbitrary CheckRequests: it must never panic, and
// must answer with either a well-formed decision or a non-OK status.
func FuzzCheck(f *testing.F) {
	for _, tc := range checkCases {
		data, err := proto.Marshal(tc.req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tc := range checkErrorCases[:5] { // the small ones
		data, err := proto.Marshal(tc.req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	a := extauthz.New(th.NewCore(f, policy.NewHolder(th.LoadEngine(f, th.Config)), nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		req := &authv3.CheckRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			t.Skip()
		}
		resp, err := a.Check(context.Background(), req)
		if err != nil {
			if resp != nil {
				t.Errorf("Check returned both a response and an error (%v)", err)
			}
			switch status.Code(err) {
			case codes.InvalidArgument, codes.FailedPrecondition:
			default:
				t.Errorf("Check error %v: want InvalidArgument or FailedPrecondition", err)
			}
			return
		}
		if _, err := proto.Marshal(resp); err != nil {
			t.Fatalf("response does not marshal: %v", err)
		}
		switch codes.Code(resp.GetStatus().GetCode()) {
		case codes.OK:
			if resp.GetOkResponse() == nil {
				t.Errorf("OK response without ok_response: %v", resp)
			}
		case codes.PermissionDenied:
			switch resp.GetDeniedResponse().GetStatus().GetCode() {
			case 204, 403:
			default:
				t.Errorf("denied response with HTTP status other than 204 or 403: %v", resp)
			}
			if resp.GetDeniedResponse().GetBody() != "" {
				t.Errorf("denied response with a body: %v", resp)
			}
		default:
			t.Errorf("response with status %v: %v", resp.GetStatus(), resp)
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	a := extauthz.New(th.NewCore(b, policy.NewHolder(th.LoadEngine(b, th.Config)), nil))
	for _, bc := range []struct {
		desc string
		req  *authv3.CheckRequest
	}{
		{"no_origin", th.CheckRequest("GET", "api.example.com", "/v1/orders", th.Hdrs{"accept": "*/*"}, "")},
		{"actual", th.CheckRequest("GET", "api.example.com", "/v1/orders", th.Hdrs{"origin": th.App}, "")},
		{"preflight", th.CheckRequest("OPTIONS", "api.example.com", "/v1/orders", th.Hdrs{
			"origin":                         th.App,
			"access-control-request-method":  "PUT",
			"access-control-request-headers": "authorization,content-type",
		}, "")},
	} {
		b.Run(bc.desc, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Check(ctx, bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckTracing is the cost of tracing a Check, sampled at 100%,
// spans batched to an exporter that drops them (what a real exporter
// costs on top is its own): go test ./extauthz -bench CheckTracing.
func BenchmarkCheckTracing(b *testing.B) {
	req := th.CheckRequest("GET", "api.example.com", "/v1/orders", th.Hdrs{"origin": th.App}, "")
	ctx := grpcmetadata.NewIncomingContext(context.Background(), grpcmetadata.Pairs("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("tracing=%t", on), func(b *testing.B) {
			opts := decision.Options{}
			if on {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardSpans{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				opts.Tracer = tp.Tracer("bench")
			}
			core := decision.New(policy.NewHolder(th.LoadEngine(b, th.Config)), opts)
			a := extauthz.New(core)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// discardSpans is a span exporter that drops every span.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }
