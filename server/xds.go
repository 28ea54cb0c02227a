package server

import (
	"context"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// The configuration in force is also served over xDS, on the gRPC port,
// to gateways that decide in process (package middleware, the Caddy
// module): published at start and on every reload that puts a new one in
// force.

// publishConfig sends e to the gateways subscribed over xDS.
func (s *Server) publishConfig(ctx context.Context, e *policy.Engine) {
	s.xds.Publish(ctx, e)
}

// registerXDS adds the xDS publisher to the gRPC server.
func (s *Server) registerXDS(pub *xdsconfig.Publisher) {
	s.xds = pub
	pub.Register(s.grpc)
	pub.Publish(context.Background(), s.engines.Load())
}

// endXDSStreams ends the xDS streams when shutdown drains the gRPC
// server: they last as long as their gateways, and GracefulStop would
// wait for them for the whole DrainTimeout.
func (s *Server) endXDSStreams() { s.xds.Shutdown() }
