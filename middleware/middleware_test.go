package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/middleware"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

const testConfig = `
policies:
  - name: api
    allowed_origins: [https://app.example.com]
    allowed_methods: [GET, PUT]
    exposed_headers: [X-Request-Id]
    allow_credentials: true
default_policy: api
`

// startCorsauthz serves testConfig on a loopback port until the test ends
// or stop is called.
func startCorsauthz(tb testing.TB, addr string) (grpcAddr string, stop func()) {
	tb.Helper()
	return startCorsauthzWith(tb, addr, testConfig)
}

// startCorsauthzWith is startCorsauthz serving config.
func startCorsauthzWith(tb testing.TB, addr, config string) (grpcAddr string, stop func()) {
	tb.Helper()
	e, _, err := policy.Load("test.yaml", []byte(config))
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: addr, AdminAddr: "127.0.0.1:0", Registry: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_ = srv.Serve(ctx)
		close(done)
	}()
	stop = func() {
		cancel()
		<-done
	}
	tb.Cleanup(stop)
	return srv.GRPCAddr().String(), stop
}

// localMiddleware is a middleware in local mode on the corsauthz at addr,
// closed when the test ends.
func localMiddleware(tb testing.TB, addr string) *middleware.Middleware {
	tb.Helper()
	m, err := middleware.New(context.Background(), middleware.Options{Address: addr, Registerer: prometheus.NewRegistry()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

func get(h http.Handler, origin string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "http://api.example.com/x", nil)
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello") })

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc string
		opts middleware.Options
		want string
	}{
		{desc: "no address", opts: middleware.Options{}, want: "no corsauthz address"},
		{desc: "unknown mode", opts: middleware.Options{Address: "127.0.0.1:1", Mode: "cached"}, want: `mode "cached"`},
		{desc: "bad address", opts: middleware.Options{Address: "dns:///a b:%", Mode: middleware.ModeRemote}, want: "corsauthz address"},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := middleware.New(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestRemoteFailsClosed: corsauthz unreachable in remote mode is 503,
// within the timeout, and the handler is not called.
func TestRemoteFailsClosed(t *testing.T) {
	t.Parallel()
	m, err := middleware.New(context.Background(), middleware.Options{Address: freeport.Addr(t), Mode: middleware.ModeRemote, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	called := false
	rec := get(m.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true })), "https://app.example.com")
	if rec.Code != http.StatusServiceUnavailable || called || rec.Body.Len() != 0 {
		t.Errorf("got %d %q (handler called: %t), want 503, empty, not called", rec.Code, rec.Body, called)
	}
}

// TestLocalStartsAfterWaitAndFailsClosed: with corsauthz away, New returns
// after StartupWait with a middleware that answers 503; once corsauthz is
// up it decides, and when corsauthz goes away again the last
// configuration keeps deciding.
func TestLocalStartsAfterWaitAndFailsClosed(t *testing.T) {
	t.Parallel()
	addr := freeport.Addr(t)
	start := time.Now()
	m, err := middleware.New(context.Background(), middleware.Options{Address: addr, StartupWait: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("New returned after %s, before StartupWait", waited)
	}
	if rec := get(m.Wrap(hello), "https://app.example.com"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("with no configuration: %d, want 503", rec.Code)
	}
	if rec := get(m.Wrap(hello), ""); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("with no configuration, no Origin: %d, want 503 (no policy known to say otherwise)", rec.Code)
	}

	_, stop := startCorsauthz(t, addr)
	select {
	case <-m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("no configuration 10s after corsauthz started")
	}
	rec := get(m.Wrap(hello), "https://app.example.com")
	if rec.Code != http.StatusOK || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" || rec.Body.String() != "hello" {
		t.Fatalf("with the configuration: %d %v %q", rec.Code, rec.Header(), rec.Body)
	}
	stop()
	for range 3 {
		time.Sleep(50 * time.Millisecond)
		if rec := get(m.Wrap(hello), "https://app.example.com"); rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Fatalf("with corsauthz stopped: %d %v, want the last configuration's answer", rec.Code, rec.Header())
		}
	}
}

func TestNewWaitIsCancelledByContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := middleware.New(ctx, middleware.Options{Address: freeport.Addr(t), StartupWait: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("New = %v, want the context's error", err)
	}
}

// TestResponseWriting: the CORS headers reach the response however the
// handler writes it, and the handler's own Access-Control-* never do.
func TestResponseWriting(t *testing.T) {
	t.Parallel()
	addr, _ := startCorsauthz(t, "127.0.0.1:0")
	for _, mode := range []middleware.Mode{middleware.ModeLocal, middleware.ModeRemote} {
		m, err := middleware.New(context.Background(), middleware.Options{Address: addr, Mode: mode, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		for _, tt := range []struct {
			desc    string
			handler http.HandlerFunc
			code    int
		}{
			{desc: "writes nothing", handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Access-Control-Allow-Origin", "*")
			}, code: 200},
			{desc: "WriteHeader only", handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("access-control-allow-credentials", "false")
				w.WriteHeader(http.StatusCreated)
			}, code: 201},
			{desc: "flushes before writing", handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Access-Control-Allow-Origin", "*")
				http.NewResponseController(w).Flush()
				fmt.Fprint(w, "late")
			}, code: 200},
		} {
			rec := get(m.Wrap(tt.handler), "https://app.example.com")
			if rec.Code != tt.code || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
				rec.Header().Get("Access-Control-Allow-Credentials") != "true" || len(rec.Header()["Access-Control-Allow-Origin"]) != 1 {
				t.Errorf("%s mode, handler %s: %d %v", mode, tt.desc, rec.Code, rec.Header())
			}
		}
	}
}

// TestServeReturnsNextError: Serve hands the wrapped handler's error back
// (Caddy's handlers return errors).
func TestServeReturnsNextError(t *testing.T) {
	t.Parallel()
	addr, _ := startCorsauthz(t, "127.0.0.1:0")
	m, err := middleware.New(context.Background(), middleware.Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	boom := errors.New("boom")
	r := httptest.NewRequest(http.MethodGet, "http://api.example.com/", nil)
	got := m.Serve(httptest.NewRecorder(), r, func(http.ResponseWriter, *http.Request) error { return boom })
	if !errors.Is(got, boom) {
		t.Errorf("Serve = %v, want next's error", got)
	}
}

// TestNoPolicyIsNotSilent: on a request no policy selects, the handler's
// own Access-Control-* headers are removed (one CORS answer: corsauthz's,
// here none) and the gateway's log says so, once, naming the host.
func TestNoPolicyIsNotSilent(t *testing.T) {
	t.Parallel()
	e, _, err := policy.Load("nodefault.yaml", []byte("policies:\n  - name: api\n    match: {hosts: [api.example.com]}\n    allowed_origins: [https://app.example.com]\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, mode := range []middleware.Mode{middleware.ModeLocal, middleware.ModeRemote} {
		var logs strings.Builder
		var mu sync.Mutex
		logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return logs.Write(p)
		}), nil))
		m, err := middleware.New(context.Background(), middleware.Options{Address: srv.GRPCAddr().String(), Mode: mode, Logger: logger, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			fmt.Fprint(w, "hello")
		}))
		for range 3 {
			r := httptest.NewRequest(http.MethodGet, "http://other.example.com/x", nil)
			r.Header.Set("Origin", "https://app.example.com")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Header().Get("Access-Control-Allow-Origin") != "" || rec.Body.String() != "hello" {
				t.Errorf("%s mode: %d %v %q, want the handler's answer without its Access-Control-*", mode, rec.Code, rec.Header(), rec.Body)
			}
		}
		mu.Lock()
		got := logs.String()
		mu.Unlock()
		if n := strings.Count(got, "no corsauthz policy selects this request"); n != 1 || !strings.Contains(got, "host=other.example.com") {
			t.Errorf("%s mode: %d warnings, want 1 naming the host:\n%s", mode, n, got)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
