package extauthz_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/goleak"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// flaky is an authorizer, HTTP and gRPC on two fixed loopback ports, that
// goes through every way of failing while requests come in: it allows
// the requests that carry the cookie or header "ok" and records their
// x-request-id, and in turn hangs past the timeout, answers garbage,
// resets connections, stops listening and comes back.
type flaky struct {
	httpAddr, grpcAddr string
	mode               atomic.Int32
	allowed            sync.Map // x-request-id → true, for each request it allowed

	mu    sync.Mutex
	stops []func()
}

const (
	modeNormal = iota
	modeHang
	modeGarbage
	modeReset
	modeDown // not listening at all: connections are refused
	modeCount
)

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch f.mode.Load() {
	case modeHang:
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
		return
	case modeGarbage:
		c, buf, err := http.NewResponseController(w).Hijack()
		if err == nil {
			buf.WriteString("HTTP/1.1 2xx garbage\r\n\r\n")
			buf.Flush()
			c.Close()
		}
		return
	case modeReset:
		c, buf, err := http.NewResponseController(w).Hijack()
		if err == nil {
			buf.WriteString("HTTP/1.1 202 Accepted\r\nContent-Length: 50\r\n\r\npart")
			buf.Flush()
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
		return
	}
	if r.Header.Get("Cookie") != "ok" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	// Recorded before answering: an allow that never arrives is not a pass.
	f.allowed.Store(r.Header.Get("X-Request-Id"), true)
	w.WriteHeader(http.StatusAccepted)
}

func (f *flaky) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if f.mode.Load() == modeHang {
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
		return &authv3.CheckResponse{}, nil // too late: an allow that never arrives
	}
	h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
	if h["cookie"] != "ok" {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)}}, nil
	}
	f.allowed.Store(h["x-request-id"], true)
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}}, nil
}

// start listens on f's ports (free ones the first time).
func (f *flaky) start(t *testing.T) {
	t.Helper()
	hl, gl := listenRetry(t, f.httpAddr), listenRetry(t, f.grpcAddr)
	f.httpAddr, f.grpcAddr = hl.Addr().String(), gl.Addr().String()
	hs := &http.Server{Handler: f}
	go hs.Serve(hl)
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, f)
	go gs.Serve(gl)
	f.mu.Lock()
	f.stops = append(f.stops, func() { hs.Close(); gs.Stop() })
	f.mu.Unlock()
}

func (f *flaky) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.stops {
		s()
	}
	f.stops = nil
}

// listenRetry listens on addr ("" for a free port), retrying a little
// while a port just closed is not yet free again.
func listenRetry(t *testing.T, addr string) net.Listener {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var err error
	for range 100 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("listen on %s: %v", addr, err)
	return nil
}

// TestAuthorizerFaultsUnderLoad sends Checks from many goroutines while
// the authorizers fail in every way and restart, and counts that no
// request passes without its allow; then that no goroutine is left.
func TestAuthorizerFaultsUnderLoad(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	f := &flaky{}
	f.start(t)
	cfg := fmt.Sprintf(`
authorizers:
  - name: forward
    http: {url: "http://%s/auth", headers: [cookie, x-request-id], timeout: 100ms}
  - name: ext
    grpc: {address: "%s", timeout: 100ms}
policies:
  - {name: web, authorizer: forward, match: {hosts: [web.example.com]}, allowed_origins: [https://app.example.com]}
  - {name: rpc, authorizer: ext, match: {hosts: [rpc.example.com]}, allowed_origins: [https://app.example.com]}
`, f.httpAddr, f.grpcAddr)

	func() { // the server and its clients end before goleak looks
		ts := startServerNoCleanup(t, policy.NewHolder(th.LoadEngine(t, cfg)))
		defer ts.close(t)
		client := ts.authz()

		modeDone := make(chan struct{})
		var modeWG sync.WaitGroup
		modeWG.Go(func() {
			for i := 1; ; i++ {
				select {
				case <-modeDone:
					return
				case <-time.After(40 * time.Millisecond):
				}
				m := int32(i % modeCount)
				if m == modeDown {
					f.stop()
				} else if f.mode.Load() == modeDown {
					f.start(t) // restarted on the same ports
				}
				f.mode.Store(m)
			}
		})

		const workers, perWorker = 8, 150
		var (
			nextID                          atomic.Int64
			passed, denied, failed, unknown atomic.Int64
			passedWithoutAllow              atomic.Int64
		)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range perWorker {
					id := strconv.FormatInt(nextID.Add(1), 10)
					host := "web.example.com"
					if (w+i)%2 == 0 {
						host = "rpc.example.com"
					}
					h := th.Hdrs{"origin": "https://app.example.com", "x-request-id": id}
					if i%3 != 0 {
						h["cookie"] = "ok"
					}
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					resp, err := client.Check(ctx, th.CheckRequest("GET", host, "/x", h, ""))
					cancel()
					switch {
					case err != nil:
						unknown.Add(1)
					case codes.Code(resp.GetStatus().GetCode()) == codes.OK:
						passed.Add(1)
						if _, ok := f.allowed.Load(id); !ok {
							passedWithoutAllow.Add(1)
						}
					case resp.GetDeniedResponse().GetStatus().GetCode() == 503:
						failed.Add(1)
					default:
						denied.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(modeDone)
		modeWG.Wait()
		f.stop()
		t.Logf("%d checks: %d passed, %d denied, %d failed (503), %d gRPC errors",
			workers*perWorker, passed.Load(), denied.Load(), failed.Load(), unknown.Load())
		if n := passedWithoutAllow.Load(); n != 0 {
			t.Errorf("%d requests passed without their authorizer's allow", n)
		}
		if unknown.Load() != 0 {
			t.Errorf("%d Checks failed with a gRPC error: a failing authorizer must be a 503 answer", unknown.Load())
		}
		if passed.Load() == 0 || denied.Load() == 0 || failed.Load() == 0 {
			t.Errorf("every outcome should occur: passed %d, denied %d, failed %d", passed.Load(), denied.Load(), failed.Load())
		}
	}()
}

// TestReloadKeepsAuthorizerConnections: a reload that leaves an authorizer
// unchanged keeps its connection; one that removes it closes it.
func TestReloadKeepsAuthorizerConnections(t *testing.T) {
	var opened, closed atomic.Int64
	lis := listenRetry(t, "")
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				opened.Add(1)
			case http.StateClosed, http.StateHijacked:
				closed.Add(1)
			}
		},
	}
	go hs.Serve(lis)
	t.Cleanup(func() { hs.Close() })
	cfg := func(origin string, withAuthorizer bool) string {
		if !withAuthorizer {
			return fmt.Sprintf("policies:\n  - {name: web, match: {hosts: [web.example.com]}, allowed_origins: [%s]}\n", origin)
		}
		return fmt.Sprintf(`
authorizers:
  - {name: forward, http: {url: "http://%s/auth", timeout: 100ms}}
policies:
  - {name: web, authorizer: forward, match: {hosts: [web.example.com]}, allowed_origins: [%s]}
`, lis.Addr(), origin)
	}
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, cfg("https://a.example.com", true))), server.Options{})
	check := func() {
		t.Helper()
		resp, err := ts.Authz().Check(th.CtxTimeout(t), th.CheckRequest("GET", "web.example.com", "/", th.Hdrs{"origin": "https://a.example.com"}, ""))
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("Check: %v %v", resp, err)
		}
	}
	check()
	check()
	if err := ts.Srv.Reload(context.Background(), "test.yaml", []byte(cfg("https://b.example.com", true))); err != nil {
		t.Fatal(err)
	}
	check()
	if n := opened.Load(); n != 1 {
		t.Errorf("%d connections to the authorizer, want 1 kept across the reload", n)
	}
	if err := ts.Srv.Reload(context.Background(), "test.yaml", []byte(cfg("https://a.example.com", false))); err != nil {
		t.Fatal(err)
	}
	th.WaitFor(t, "the removed authorizer's connection to close", func() bool { return closed.Load() == 1 })
}

// startServerNoCleanup is startServer for a test that must see the server
// gone before it ends (goleak).
func startServerNoCleanup(t *testing.T, holder *policy.Holder) *closableServer {
	t.Helper()
	srv, err := server.New(holder, server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return &closableServer{conn: conn, cancel: cancel, done: done}
}

type closableServer struct {
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan error
}

func (s *closableServer) authz() authv3.AuthorizationClient {
	return authv3.NewAuthorizationClient(s.conn)
}

func (s *closableServer) close(t *testing.T) {
	s.conn.Close()
	s.cancel()
	if err := <-s.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
