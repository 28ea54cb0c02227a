package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

const (
	authorizationService = "envoy.service.auth.v3.Authorization"
	decisionService      = "corsauthz.v1.DecisionService"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc   string
		engine *policy.Engine
		want   healthpb.HealthCheckResponse_ServingStatus
	}{
		{"configuration loaded", th.LoadEngine(t, th.Config), healthpb.HealthCheckResponse_SERVING},
		{"no configuration", nil, healthpb.HealthCheckResponse_NOT_SERVING},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			ts := th.StartServer(t, policy.NewHolder(tc.engine), server.Options{})
			client := healthpb.NewHealthClient(ts.Conn)
			for _, service := range []string{"", authorizationService, decisionService} {
				resp, err := client.Check(th.CtxTimeout(t), &healthpb.HealthCheckRequest{Service: service})
				if err != nil {
					t.Fatalf("Health.Check(%q): %v", service, err)
				}
				if resp.GetStatus() != tc.want {
					t.Errorf("Health.Check(%q) = %v, want %v", service, resp.GetStatus(), tc.want)
				}
			}
		})
	}
}

func TestReflection(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	stream, err := reflectionpb.NewServerReflectionClient(ts.Conn).ServerReflectionInfo(th.CtxTimeout(t))
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		got = append(got, s.GetName())
	}
	for _, want := range []string{
		authorizationService,
		decisionService,
		"grpc.health.v1.Health",
		"grpc.reflection.v1.ServerReflection",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("reflection lists %q, not %q", got, want)
		}
	}
}

// TestDecisionServiceServed checks that the decision API shares the port
// and the engine of ext_authz.
func TestDecisionServiceServed(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	resp, err := corsauthzv1.NewDecisionServiceClient(ts.Conn).Decide(th.CtxTimeout(t), &corsauthzv1.DecideRequest{
		Method: "GET", Host: "strict.example.com", Path: "/", Origin: th.Evil,
	})
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if resp.GetAction() != corsauthzv1.Action_ACTION_RESPOND || resp.GetHttpStatus() != 403 || resp.GetPolicy() != "strict" {
		t.Errorf("Decide = %v, want a 403 answer from policy strict", resp)
	}
}

func TestNewPortTaken(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	holder := policy.NewHolder(th.LoadEngine(t, th.Config))
	for _, tc := range []struct {
		desc string
		opts server.Options
		want string
	}{
		{"gRPC", server.Options{GRPCAddr: addr, AdminAddr: "127.0.0.1:0"}, "listen on " + addr + " for gRPC: address already in use"},
		{"admin", server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: addr}, "listen on " + addr + " for the admin HTTP server: address already in use"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			srv, err := server.New(holder, tc.opts)
			if err == nil {
				t.Fatalf("New succeeded (gRPC on %v, admin on %v)", srv.GRPCAddr(), srv.AdminAddr())
			}
			if err.Error() != tc.want {
				t.Errorf("error = %q\nwant    %q", err, tc.want)
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("errors.Is(%v, EADDRINUSE) = false", err)
			}
		})
	}
}

func TestNewBadAddress(t *testing.T) {
	t.Parallel()
	_, err := server.New(policy.NewHolder(nil), server.Options{GRPCAddr: "127.0.0.1", AdminAddr: "127.0.0.1:0"})
	if err == nil || !strings.HasPrefix(err.Error(), "listen on 127.0.0.1 for gRPC: ") {
		t.Errorf("New with an address without port: error = %v", err)
	}
}

func TestAdminHTTP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc       string
		engine     *policy.Engine
		path       string
		wantStatus int
		wantBody   string // exact, or with a leading "~" a substring
	}{
		{"healthz", th.LoadEngine(t, th.Config), "/healthz", 200, "ok\n"},
		{"healthz without configuration", nil, "/healthz", 200, "ok\n"},
		{"readyz", th.LoadEngine(t, th.Config), "/readyz", 200, "ready\n"},
		{"readyz without configuration", nil, "/readyz", 503, "not ready: no configuration loaded\n"},
		{"metrics", th.LoadEngine(t, th.Config), "/metrics", 200, "~\ncorsauthz_build_info{goversion=\"go"},
		{"unknown path", nil, "/debug/pprof/", 404, "~not found"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			ts := th.StartServer(t, policy.NewHolder(tc.engine), server.Options{})
			status, body := ts.Get(t, tc.path)
			if status != tc.wantStatus {
				t.Errorf("GET %s: status %d, want %d", tc.path, status, tc.wantStatus)
			}
			if sub, ok := strings.CutPrefix(tc.wantBody, "~"); ok {
				if !strings.Contains(body, sub) {
					t.Errorf("GET %s: body does not contain %q:\n%s", tc.path, sub, body)
				}
			} else if body != tc.wantBody {
				t.Errorf("GET %s: body %q, want %q", tc.path, body, tc.wantBody)
			}
		})
	}
}

func TestDefaultRegistry(t *testing.T) {
	t.Parallel()
	srv, err := server.New(policy.NewHolder(nil), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	resp, err := http.Get("http://" + srv.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"\ngo_goroutines ", "\nprocess_", "\ncorsauthz_build_info{"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics of the default registry lacks %q", want)
		}
	}
}

func TestAdminHTTPMethodNotAllowed(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(nil), server.Options{})
	resp, err := http.Post("http://"+ts.Srv.AdminAddr().String()+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: status %d, want 405", resp.StatusCode)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	engine := th.LoadEngine(t, th.Config)
	ts := th.StartServer(t, policy.NewHolder(engine), server.Options{})
	client := ts.Authz()
	ctx := th.CtxTimeout(t)
	calls := []struct {
		method, host, origin, corsPolicy string
	}{
		{"GET", "api.example.com", th.App, ""},
		{"GET", "api.example.com", th.App, ""},
		{"GET", "api.example.com", th.Evil, ""},
		{"GET", "shadow.example.com", th.Evil, ""},
		{"GET", "api.example.com", "", ""},
		{"GET", "api.example.com", th.App, "no-such-policy-from-the-gateway"},
	}
	for _, c := range calls {
		h := th.Hdrs{}
		if c.origin != "" {
			h["origin"] = c.origin
		}
		_, _ = client.Check(ctx, th.CheckRequest(c.method, c.host, "/", h, c.corsPolicy))
	}
	_, _ = client.Check(ctx, th.CheckRequest("OPTIONS", "api.example.com", "/", th.Hdrs{"origin": th.App, "access-control-request-method": "PATCH"}, ""))

	status, body := ts.Get(t, "/metrics")
	if status != 200 {
		t.Fatalf("GET /metrics: status %d", status)
	}
	for _, want := range []string{
		`corsauthz_decisions_total{kind="actual_allowed",policy="api"} 2`,
		`corsauthz_decisions_total{kind="actual_disallowed",policy="api"} 1`,
		`corsauthz_decisions_total{kind="actual_disallowed",policy="shadow"} 1`,
		`corsauthz_decisions_total{kind="not_cors",policy="api"} 1`,
		`corsauthz_decisions_total{kind="preflight_rejected",policy="api"} 1`,
		`corsauthz_check_errors_total{code="FailedPrecondition"} 1`,
		`corsauthz_check_duration_seconds_count 7`,
		`corsauthz_check_duration_seconds_bucket{le="1e-05"}`,
		`corsauthz_config_info{hash="` + engine.Hash() + `"} 1`,
	} {
		if !strings.Contains(body, want+"\n") && !strings.Contains(body, want+" ") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "no-such-policy") || strings.Contains(body, "evil") {
		t.Errorf("/metrics holds a value taken from a request:\n%s", body)
	}
}

// blockingCheck is an interceptor that holds Check calls until released.
type blockingCheck struct {
	entered chan struct{}
	release chan struct{}
}

func newBlockingCheck() *blockingCheck {
	return &blockingCheck{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (b *blockingCheck) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if info.FullMethod == "/"+authorizationService+"/Check" {
		b.entered <- struct{}{}
		select {
		case <-b.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return handler(ctx, req)
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	block := newBlockingCheck()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		DrainTimeout:      time.Minute, // never reached: the test would time out first
		GRPCServerOptions: []grpc.ServerOption{grpc.UnaryInterceptor(block.intercept)},
	})
	ctx := th.CtxTimeout(t)

	watch, err := healthpb.NewHealthClient(ts.Conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: authorizationService})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch before shutdown: %v, %v; want SERVING", resp, err)
	}

	type result struct {
		resp any
		err  error
	}
	inFlight := make(chan result, 1)
	go func() {
		resp, err := ts.Authz().Check(ctx, th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, ""))
		inFlight <- result{resp, err}
	}()
	<-block.entered

	served := ts.Shutdown()

	// Health says NOT_SERVING to watchers, then ends their streams so
	// that they do not hold the drain.
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch during shutdown: %v, %v; want NOT_SERVING", resp, err)
	}
	if _, err := watch.Recv(); err == nil {
		t.Errorf("Watch stream still open during shutdown")
	}
	if status, body := ts.Get(t, "/readyz"); status != 503 || body != "not ready: shutting down\n" {
		t.Errorf("/readyz during shutdown: %d %q, want 503", status, body)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a call in flight", err)
	case <-time.After(50 * time.Millisecond):
	}

	close(block.release)
	r := <-inFlight
	if r.err != nil {
		t.Errorf("in-flight Check failed: %v", r.err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last call finished")
	}
	if c, err := net.DialTimeout("tcp", ts.Srv.GRPCAddr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("gRPC port still accepts connections after Serve returned")
	}
}

func TestDrainTimeout(t *testing.T) {
	t.Parallel()
	block := newBlockingCheck()
	defer close(block.release)
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		DrainTimeout:      100 * time.Millisecond,
		GRPCServerOptions: []grpc.ServerOption{grpc.UnaryInterceptor(block.intercept)},
	})
	inFlight := make(chan error, 1)
	go func() {
		_, err := ts.Authz().Check(th.CtxTimeout(t), th.CheckRequest("GET", "api.example.com", "/", nil, ""))
		inFlight <- err
	}()
	<-block.entered
	start := time.Now()
	if err := <-ts.Shutdown(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Serve took %v to return with a drain timeout of 100ms", d)
	}
	if err := <-inFlight; status.Code(err) != codes.Unavailable {
		t.Errorf("call cut by the drain timeout: %v, want Unavailable", err)
	}
}

func TestServeCancelled(t *testing.T) {
	t.Parallel()
	srv, err := server.New(policy.NewHolder(nil), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Serve(ctx); err != nil {
		t.Errorf("Serve with a cancelled context: %v", err)
	}
	for _, addr := range []net.Addr{srv.GRPCAddr(), srv.AdminAddr()} {
		if c, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%v still accepts connections after Serve returned", addr)
		}
	}
}

func TestServeTwice(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(nil), server.Options{})
	ts.Get(t, "/healthz") // the first Serve is serving
	if err := ts.Srv.Serve(context.Background()); err == nil {
		t.Error("second Serve returned nil")
	}
}
