package server

import (
	"cmp"
	"context"
	"log/slog"
	"net"

	"github.com/corsauthz/corsauthz/internal/connlimit"
)

// DefaultGRPCMaxConnections is the default of Options.GRPCMaxConnections
// (corsauthz serve --grpc-max-connections). An idle gRPC connection costs
// about 25 KiB, most of it the stacks of grpc-go's three goroutines per
// connection (docs/limits.md): 3,000 of them took the process from 24 to
// 99 MiB, and 5,000 would pass the shipped 128 MiB. Envoy keeps a few
// connections per worker thread, so this many serve hundreds of gateways;
// past it, they spread over more replicas.
const DefaultGRPCMaxConnections = 2048

// limitGRPCConnections puts the cap on the gRPC listener's connections:
// one past it is closed at once, before TLS or HTTP/2 (the gateway's call
// fails UNAVAILABLE, which Envoy retries or answers by its
// failure_mode_allow; a gRPC client reconnects with backoff). Open ones
// are counted in corsauthz_grpc_connections, refused ones in
// corsauthz_grpc_connections_refused_total and logged within the request
// log's rate limit.
func (s *Server) limitGRPCConnections(l net.Listener, max int) net.Listener {
	max = cmp.Or(max, DefaultGRPCMaxConnections)
	return connlimit.Listen(l, connlimit.Limits{
		Max: max,
		Refused: func() {
			s.metrics.grpcConnectionRefused()
			s.core.Log(context.Background(), slog.LevelWarn, "gRPC listener: connection closed: too many connections open (--grpc-max-connections)",
				slog.String("listener", "grpc"), slog.Int("limit", max))
		},
		Opened: func() { s.metrics.grpcConnections(1) },
		Closed: func() { s.metrics.grpcConnections(-1) },
	})
}
