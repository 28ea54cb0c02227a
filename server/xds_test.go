package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	"github.com/corsauthz/corsauthz/middleware"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

func originConfig(origin string) string {
	return fmt.Sprintf("policies:\n  - name: api\n    allowed_origins: [%q]\ndefault_policy: api\n", origin)
}

// allowOrigin is the Access-Control-Allow-Origin the middleware sends for
// a GET from origin.
func allowOrigin(m *middleware.Middleware, origin string) string {
	r := httptest.NewRequest(http.MethodGet, "http://api.example.com/", nil)
	r.Header.Set("Origin", origin)
	rec := httptest.NewRecorder()
	m.Wrap(http.NotFoundHandler()).ServeHTTP(rec, r)
	return rec.Header().Get("Access-Control-Allow-Origin")
}

// TestReloadReachesLocalMiddleware: every reload that puts a configuration
// in force is pushed over xDS to the gateways deciding in process; a
// refused one is not.
func TestReloadReachesLocalMiddleware(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, originConfig("https://one.example"))), server.Options{})
	m, err := middleware.New(th.CtxTimeout(t), middleware.Options{Address: ts.Srv.GRPCAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if got := allowOrigin(m, "https://one.example"); got != "https://one.example" {
		t.Fatalf("before the reload: Access-Control-Allow-Origin %q", got)
	}

	start := time.Now()
	if err := ts.Srv.Reload(th.CtxTimeout(t), "test.yaml", []byte(originConfig("https://two.example"))); err != nil {
		t.Fatal(err)
	}
	for allowOrigin(m, "https://two.example") != "https://two.example" {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the reloaded configuration did not reach the middleware in 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("reload seen by the middleware after %s", time.Since(start))

	if err := ts.Srv.Reload(th.CtxTimeout(t), "test.yaml", []byte("policies: [")); err == nil {
		t.Fatal("an invalid configuration reloaded")
	}
	time.Sleep(100 * time.Millisecond)
	if got := allowOrigin(m, "https://two.example"); got != "https://two.example" {
		t.Errorf("after a refused reload: Access-Control-Allow-Origin %q", got)
	}
	_, body := ts.Get(t, "/metrics")
	if sent, acked := th.Metric(body, "corsauthz_xds_versions_sent_total"), th.Metric(body, "corsauthz_xds_versions_acked_total"); sent != 2 || acked != 2 {
		t.Errorf("versions sent %v, acked %v; want 2 and 2", sent, acked)
	}
	if got := th.Metric(body, "corsauthz_xds_streams"); got != 1 {
		t.Errorf("corsauthz_xds_streams = %v, want 1", got)
	}
}

// TestShutdownEndsXDSStreams: an xDS stream lasts as long as its gateway;
// shutdown must not wait the whole drain timeout for it, and the gateway
// keeps deciding with the last configuration.
func TestShutdownEndsXDSStreams(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, originConfig("https://one.example"))), server.Options{DrainTimeout: time.Minute})
	var m *middleware.Middleware
	for range 20 {
		var err error
		m, err = middleware.New(th.CtxTimeout(t), middleware.Options{Address: ts.Srv.GRPCAddr().String()})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
	}
	start := time.Now()
	select {
	case err := <-ts.Shutdown():
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still draining 20s after shutdown began, with xDS streams open")
	}
	t.Logf("shut down in %s with xDS streams open", time.Since(start))
	if got := allowOrigin(m, "https://one.example"); got != "https://one.example" {
		t.Errorf("with corsauthz gone: Access-Control-Allow-Origin %q, want the last configuration's answer", got)
	}
}
