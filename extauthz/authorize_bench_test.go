package extauthz_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// okAuthz allows everything, as cmd/loadbench/nothing does.
type okAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (okAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}}, nil
}

// BenchmarkCheckChained is a Check through the fast path to a gRPC
// authorizer that allows, over loopback: what a chained Check costs
// corsauthz in process (cmd/loadbench measures it between processes).
func BenchmarkCheckChained(b *testing.B) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, okAuthz{})
	go gs.Serve(lis)
	b.Cleanup(gs.Stop)
	cfg := fmt.Sprintf(`
authorizers:
  - {name: ok, grpc: {address: "%s", timeout: 1s}}
policies:
  - {name: api, authorizer: ok, match: {hosts: [api.example.com]}, allowed_origins: [https://app.example.com]}
`, lis.Addr())
	ts := th.StartServer(b, policy.NewHolder(th.LoadEngine(b, cfg)), server.Options{})
	req, err := proto.Marshal(th.CheckRequest("GET", "api.example.com", "/v1/x", th.Hdrs{"origin": "https://app.example.com"}, ""))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := th.RawCheck(ctx, ts.Conn, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
