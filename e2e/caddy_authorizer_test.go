package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// TestCaddyAsksAuthorizer: real Caddy with the corsauthz module, in local
// and in remote mode, in front of an upstream, under a policy with an HTTP
// authorizer (a forward-auth service that wants the cookie session=ok).
// An unauthenticated DELETE is the authorizer's 401 with the CORS headers
// (the page can read it) and never reaches the upstream; with the cookie
// the upstream gets the request with the authorizer's X-Auth-Request-User
// and never the client's own; a preflight never reaches the authorizer.
func TestCaddyAsksAuthorizer(t *testing.T) {
	bin := caddyBinary(t)

	var mu sync.Mutex
	asked := 0
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked++
		mu.Unlock()
		if r.Header.Get("Cookie") != "session=ok" {
			w.Header().Set("Access-Control-Allow-Origin", "*") // never reaches the browser
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"login":"/oauth2/start"}`)
			return
		}
		w.Header().Set("X-Auth-Request-User", "alice")
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(auth.Close)
	var seen []http.Header
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		fmt.Fprint(w, "deleted")
	}))
	t.Cleanup(upstream.Close)

	e, _, err := policy.Load("authorizer.yaml", []byte(fmt.Sprintf(`
authorizers:
  - name: sso
    http:
      url: %s/oauth2/auth
      headers: [cookie]
      upstream_headers: [x-auth-request-user]
      timeout: 2s
policies:
  - name: api
    authorizer: sso
    allowed_origins: [https://app.example.com]
    allowed_methods: [GET, DELETE]
    allow_credentials: true
default_policy: api
`, auth.URL)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, srv)

	up, _ := url.Parse(upstream.URL)
	for _, mode := range []string{"local", "remote"} {
		t.Run(mode, func(t *testing.T) {
			port := freePort(t)
			caddy := runCaddy(t, bin, port, fmt.Sprintf(
				"{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n}\n\nhttp://:%s {\n\tbind 127.0.0.1\n\tcorsauthz {\n\t\taddress %s\n\t\tmode %s\n\t}\n\treverse_proxy %s\n}\n",
				port, srv.GRPCAddr(), mode, up.Host),
				func(int) bool { return true }) // any answer: the configuration is loaded

			mu.Lock()
			askedBefore, seenBefore := asked, len(seen)
			mu.Unlock()
			resp, body := caddyDo(t, caddy, "DELETE", "/v1/orders/1", "Origin", "https://app.example.com")
			if resp.StatusCode != http.StatusUnauthorized || body != `{"login":"/oauth2/start"}` ||
				resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
				resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
				t.Errorf("unauthenticated DELETE: %d %v %q, want the authorizer's 401 with corsauthz's CORS headers", resp.StatusCode, resp.Header, body)
			}
			mu.Lock()
			if len(seen) != seenBefore {
				t.Errorf("the unauthenticated DELETE reached the upstream")
			}
			if asked != askedBefore+1 {
				t.Errorf("the authorizer was asked %d times, want 1", asked-askedBefore)
			}
			askedBefore = asked
			mu.Unlock()

			resp, _ = caddyDo(t, caddy, "OPTIONS", "/v1/orders/1", "Origin", "https://app.example.com", "Access-Control-Request-Method", "DELETE")
			if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Methods") != "DELETE" {
				t.Errorf("preflight: %d %v, want 204 allowing DELETE", resp.StatusCode, resp.Header)
			}
			mu.Lock()
			if asked != askedBefore {
				t.Errorf("the preflight reached the authorizer")
			}
			mu.Unlock()

			resp, body = caddyDo(t, caddy, "DELETE", "/v1/orders/1", "Origin", "https://app.example.com",
				"Cookie", "session=ok", "X-Auth-Request-User", "admin")
			if resp.StatusCode != http.StatusOK || body != "deleted" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
				t.Errorf("signed-in DELETE: %d %v %q, want 200 from the upstream with the CORS headers", resp.StatusCode, resp.Header, body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != seenBefore+1 {
				t.Fatalf("the upstream got %d requests, want 1", len(seen)-seenBefore)
			}
			if got := seen[len(seen)-1]["X-Auth-Request-User"]; len(got) != 1 || got[0] != "alice" {
				t.Errorf("the upstream saw X-Auth-Request-User %q, want the authorizer's alice only", got)
			}
		})
	}
}

// caddyDo sends one request to Caddy with headers given as name, value
// pairs, and returns the response and its body.
func caddyDo(t *testing.T, caddy *url.URL, method, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, caddy.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "api.example.com"
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// serveUntilCleanup serves srv until the test ends.
func serveUntilCleanup(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("corsauthz Serve: %v", err)
		}
	})
}
