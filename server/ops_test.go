package server_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

func TestDecisionLogRateLimit(t *testing.T) {
	t.Parallel()
	const rate = 20
	var logs th.LogBuffer
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		Logger:          logs.Logger(slog.LevelInfo),
		DecisionLogRate: rate,
	})
	client := ts.Authz()
	ctx := th.CtxTimeout(t)
	reject := th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.Evil}, "")
	shadow := th.CheckRequest("GET", "shadow.example.com", "/", th.Hdrs{"origin": th.Evil}, "")

	start := time.Now()
	const flood = 300
	for i := range flood {
		req := reject
		if i == 0 {
			req = shadow // the first line is a report_only policy's
		}
		if _, err := client.Check(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	time.Sleep(1100 * time.Millisecond) // the next report is due
	if _, err := client.Check(ctx, reject); err != nil {
		t.Fatal(err)
	}

	logged := logs.WithMsg(t, "origin not allowed")
	if max := rate + int(elapsed.Seconds()*rate) + 2; len(logged) > max || len(logged) < rate {
		t.Errorf("%d decision lines for %d rejections in %v, want between %d and %d", len(logged), flood+1, elapsed, rate, max)
	}
	if first := logged[0]; first["policy"] != "shadow" || first["report_only"] != true || first["kind"] != "actual_disallowed" || first["status"] != 403.0 {
		t.Errorf("report_only line: %v; want policy shadow, report_only true, and the kind and status it would have decided", first)
	}
	reported := 0
	for _, rec := range logs.WithMsg(t, "decision log lines suppressed by the rate limit") {
		if rec["level"] != "WARN" {
			t.Errorf("suppression line at %v", rec["level"])
		}
		reported += int(rec["suppressed"].(float64))
	}
	_, body := ts.Get(t, "/metrics")
	suppressed := th.Metric(body, `corsauthz_decision_logs_suppressed_total{level="info"}`)
	if want := flood + 1 - len(logged); reported != want || suppressed != float64(want) {
		t.Errorf("suppressed: %d reported in the log, %v counted; want %d (%d calls, %d lines)", reported, suppressed, want, flood+1, len(logged))
	}
}

// TestOptionsLimits checks the limits Options set on the gRPC server.
func TestOptionsLimits(t *testing.T) {
	t.Parallel()
	engine := th.LoadEngine(t, th.Config)
	t.Run("max message size", func(t *testing.T) {
		t.Parallel()
		ts := th.StartServer(t, policy.NewHolder(engine), server.Options{MaxRecvMsgSize: 4 << 10})
		_, err := ts.Authz().Check(th.CtxTimeout(t), th.CheckRequest("GET", "api.example.com", "/"+strings.Repeat("a", 8<<10), nil, ""))
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("Check of 8 KiB with a limit of 4 KiB: %v, want ResourceExhausted", err)
		}
		if _, err := ts.Authz().Check(th.CtxTimeout(t), th.CheckRequest("GET", "api.example.com", "/", nil, "")); err != nil {
			t.Errorf("small Check: %v", err)
		}
	})
	t.Run("max connection age", func(t *testing.T) {
		t.Parallel()
		ts := th.StartServer(t, policy.NewHolder(engine), server.Options{
			MaxConnectionAge:      100 * time.Millisecond,
			MaxConnectionAgeGrace: time.Second,
		})
		// Calls keep succeeding while the server closes connections for
		// their age, and the client ends up on a new connection.
		ports := map[string]bool{}
		deadline := time.Now().Add(5 * time.Second)
		for len(ports) < 2 && time.Now().Before(deadline) {
			var p peer.Peer
			_, err := ts.Authz().Check(th.CtxTimeout(t), th.CheckRequest("GET", "api.example.com", "/", nil, ""), grpc.Peer(&p), grpc.WaitForReady(true))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			ports[p.LocalAddr.String()] = true
			time.Sleep(10 * time.Millisecond)
		}
		if len(ports) < 2 {
			t.Errorf("one connection for 5s with a max connection age of 100ms")
		}
	})
	t.Run("build version", func(t *testing.T) {
		t.Parallel()
		ts := th.StartServer(t, policy.NewHolder(engine), server.Options{Version: "v1.2.3"})
		_, body := ts.Get(t, "/metrics")
		if !strings.Contains(body, `corsauthz_build_info{goversion="go`) || !strings.Contains(body, `",version="v1.2.3"} 1`) {
			t.Errorf("build info without the version given:\n%s", body)
		}
	})
}

// TestShutdownUnderLoad cancels Serve while clients send Checks as fast as
// they can, each stopping when health says NOT_SERVING, as a gateway or a
// load balancer does: with a shutdown delay long enough for them to notice,
// no call fails.
func TestShutdownUnderLoad(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		ShutdownDelay: 300 * time.Millisecond,
		DrainTimeout:  5 * time.Second,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var notServing atomic.Bool
	watch, err := healthpb.NewHealthClient(ts.Conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: authorizationService})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v, %v; want SERVING", resp, err)
	}
	watchDone := make(chan time.Time, 1)
	go func() {
		for {
			resp, err := watch.Recv()
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				notServing.Store(true)
				watchDone <- time.Now()
				return
			}
		}
	}()

	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	const workers = 8
	for range workers {
		wg.Go(func() {
			client := ts.Authz()
			req := th.CheckRequest("OPTIONS", "api.example.com", "/", th.Hdrs{"origin": th.App, "access-control-request-method": "PUT"}, "")
			for !notServing.Load() {
				sent.Add(1)
				if _, err := client.Check(ctx, req); err != nil {
					failed.Add(1)
					t.Errorf("Check during shutdown: %v", err)
					return
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // under load
	begin := time.Now()
	served := ts.Shutdown()
	var exited time.Time
	select {
	case err := <-served:
		exited = time.Now()
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	wg.Wait()
	sawNotServing := <-watchDone
	t.Logf("%d Checks from %d goroutines, %d failed; NOT_SERVING seen %v after shutdown began, Serve returned after %v",
		sent.Load(), workers, failed.Load(), sawNotServing.Sub(begin).Round(time.Millisecond), exited.Sub(begin).Round(time.Millisecond))
	if !sawNotServing.Before(exited) {
		t.Errorf("NOT_SERVING seen at %v, after Serve returned at %v", sawNotServing, exited)
	}
	if failed.Load() != 0 || sent.Load() < workers {
		t.Errorf("%d of %d Checks failed", failed.Load(), sent.Load())
	}
	if c, err := net.DialTimeout("tcp", ts.Srv.GRPCAddr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("gRPC port still open after Serve returned")
	}
	ts.Conn.Close()
}

// TestShutdownDelay checks that during the delay health says NOT_SERVING
// while Checks are still answered, new connections included.
func TestShutdownDelay(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{ShutdownDelay: time.Second})
	begin := time.Now()
	served := ts.Shutdown()
	th.WaitFor(t, "/readyz to say shutting down", func() bool {
		status, _ := ts.Get(t, "/readyz")
		return status == 503
	})
	resp, err := healthpb.NewHealthClient(ts.Conn).Check(th.CtxTimeout(t), &healthpb.HealthCheckRequest{Service: authorizationService})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health during the delay: %v, %v; want NOT_SERVING", resp, err)
	}
	if _, err := ts.Authz().Check(th.CtxTimeout(t), th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, "")); err != nil {
		t.Errorf("Check during the delay: %v", err)
	}
	if _, err := healthCheck(t, ts.Srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Errorf("new connection during the delay: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if d := time.Since(begin); d < time.Second {
		t.Errorf("Serve returned after %v, before the shutdown delay of 1s", d)
	}
}

func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }
