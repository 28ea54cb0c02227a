package server_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	th "github.com/corsauthz/corsauthz/internal/testharness"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// TestGRPCConnectionCap: with --grpc-max-connections 3, three connections
// are served; the next is closed at once (its call fails UNAVAILABLE),
// counted and logged; once one of the three closes, a new connection is
// served. (Before: no cap; 3,000 idle connections took 99 MiB.)
func TestGRPCConnectionCap(t *testing.T) {
	t.Parallel()
	const limit = 3
	var logs th.LogBuffer
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		Logger: logs.Logger(slog.LevelInfo), GRPCMaxConnections: limit,
	})
	addr := ts.Srv.GRPCAddr().String()
	ask := func(cc *grpc.ClientConn) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	dial := func() *grpc.ClientConn {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	var open []*grpc.ClientConn
	for range limit {
		cc := dial()
		if err := ask(cc); err != nil {
			t.Fatalf("a connection within the cap: %v", err)
		}
		open = append(open, cc)
	}
	connections := func() float64 {
		_, metrics := ts.Get(t, "/metrics")
		return th.Metric(metrics, "corsauthz_grpc_connections")
	}
	if got := connections(); got != limit {
		t.Errorf("corsauthz_grpc_connections = %v, want %d", got, limit)
	}

	past := dial()
	t0 := time.Now()
	if err := ask(past); status.Code(err) != codes.Unavailable {
		t.Errorf("a connection past the cap: %v, want UNAVAILABLE", err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("the refusal took %s", d)
	}
	past.Close()
	_, metrics := ts.Get(t, "/metrics")
	if got := th.Metric(metrics, "corsauthz_grpc_connections_refused_total"); got < 1 {
		t.Errorf("corsauthz_grpc_connections_refused_total = %v, want at least 1", got)
	}
	if n := len(logs.WithMsg(t, "gRPC listener: connection closed: too many connections open (--grpc-max-connections)")); n < 1 {
		t.Errorf("%d refusal lines, want at least 1", n)
	}
	if got := connections(); got != limit {
		t.Errorf("after the refusal corsauthz_grpc_connections = %v, want %d", got, limit)
	}

	open[0].Close()
	th.WaitFor(t, "a closed connection still counted", func() bool { return connections() == limit-1 })
	if err := ask(dial()); err != nil {
		t.Errorf("a connection after one closed: %v", err)
	}
}
