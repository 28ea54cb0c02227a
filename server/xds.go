package server

import (
	"context"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// The configuration in force is also served over xDS, on the gRPC port,
// to gateways that decide in process (package middleware, the Caddy
// module): published at start and on every reload that puts a new one in
// force.

// adsStreamMethod is the one xDS method served.
var adsStreamMethod = "/" + discoveryv3.AggregatedDiscoveryService_ServiceDesc.ServiceName + "/StreamAggregatedResources"

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

// endXDSOnDrain ends xDS streams once shutdown begins: they last as long
// as the gateway does, and GracefulStop would otherwise wait for them for
// the whole DrainTimeout. The gateways keep their last configuration and
// reconnect, to this or another replica.
func (s *Server) endXDSOnDrain(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != adsStreamMethod {
		return handler(srv, ss)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	go func() {
		select {
		case <-s.drainCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
}

// ctxStream is a server stream with another context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }
