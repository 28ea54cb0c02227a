package server_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// listenerAnswer is an HTTP listener's answer as a gateway reads it: the
// status, every header line but Date and Content-Length ("Name: value",
// sorted) and the body.
type listenerAnswer struct {
	status  int
	headers []string
	body    string
}

// askHTTP sends a check to the HTTP listener at addr, described as NGINX
// does (X-Forwarded-*) with the request's own headers hs.
func askHTTP(t *testing.T, addr, method, host, uri string, hs map[string]string) listenerAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(th.CtxTimeout(t), "GET", "http://"+addr+"/check", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Host", host)
	req.Header.Set("X-Forwarded-Uri", uri)
	req.Header.Set("X-Forwarded-Proto", "https")
	for k, v := range hs {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("HTTP check: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := listenerAnswer{status: resp.StatusCode, body: string(body)}
	for name, vs := range resp.Header {
		if name == "Date" || name == "Content-Length" {
			continue
		}
		for _, v := range vs {
			a.headers = append(a.headers, name+": "+v)
		}
	}
	slices.Sort(a.headers)
	return a
}

// TestHTTPListenerAsksAuthorizers: the HTTP listener asks the policy's
// authorizer exactly when Check does (docs/authorizers.md: every request but
// preflights and reject-mode refusals) and writes the merged answer in
// its own protocol (docs/nginx.md): an allow is a 200 with the CORS headers, the
// headers for the upstream and X-Envoy-Auth-Headers-To-Remove; a denial
// the authorizer's status, headers and body with the CORS headers; a
// failure a 503 with the CORS headers.
func TestHTTPListenerAsksAuthorizers(t *testing.T) {
	ta := th.StartTestAuthorizers(t)
	holder := policy.NewHolder(th.LoadEngine(t, fmt.Sprintf(th.AuthorizerConfig, ta.HTTPURL, ta.GRPCAddr)))
	ts := th.StartServer(t, holder, server.Options{HTTPAddr: "127.0.0.1:0"})
	addr := ts.Srv.HTTPAddr().String()

	origin := "https://app.example.com"
	tests := []struct {
		desc              string
		method, host, uri string
		headers           map[string]string
		want              listenerAnswer
		httpAsked         int64
		grpcAsked         int
	}{
		{
			desc:   "HTTP authorizer allows: 200, CORS headers, its upstream_headers, the absent one to remove",
			method: "GET", host: "web.example.com", uri: "/v1/x?q=1",
			headers: map[string]string{"Origin": origin, "Cookie": "session=ok", "X-Auth-Request-Email": "forged@example.com"},
			want: listenerAnswer{status: 200, headers: []string{
				"Access-Control-Allow-Credentials: true",
				"Access-Control-Allow-Origin: https://app.example.com",
				"Vary: Origin",
				"X-Auth-Request-User: alice",
				"X-Envoy-Auth-Headers-To-Remove: x-auth-request-email",
			}},
			httpAsked: 1,
		},
		{
			desc:   "HTTP authorizer denies: its 401, headers and body, corsauthz's Allow-Origin wins",
			method: "GET", host: "web.example.com", uri: "/v1/x",
			headers: map[string]string{"Origin": origin},
			want: listenerAnswer{status: 401, headers: []string{
				"Access-Control-Allow-Credentials: true",
				"Access-Control-Allow-Origin: https://app.example.com",
				"Content-Type: application/json",
				"Vary: Origin",
			}, body: `{"login":"/oauth2/start"}`},
			httpAsked: 1,
		},
		{
			desc:   "a request without Origin asks too, and gets Vary: Origin",
			method: "GET", host: "web.example.com", uri: "/v1/x",
			headers: map[string]string{"Cookie": "session=ok"},
			want: listenerAnswer{status: 200, headers: []string{
				"Vary: Origin",
				"X-Auth-Request-User: alice",
				"X-Envoy-Auth-Headers-To-Remove: x-auth-request-email",
			}},
			httpAsked: 1,
		},
		{
			desc:   "a preflight never reaches the authorizer",
			method: "OPTIONS", host: "web.example.com", uri: "/v1/x",
			headers: map[string]string{"Origin": origin, "Access-Control-Request-Method": "PUT", "Cookie": "session=ok"},
			want: listenerAnswer{status: 204, headers: []string{
				"Access-Control-Allow-Credentials: true",
				"Access-Control-Allow-Methods: PUT",
				"Access-Control-Allow-Origin: https://app.example.com",
				"Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
			}},
		},
		{
			desc:   "a reject_disallowed_origins refusal never reaches the authorizer",
			method: "GET", host: "web.example.com", uri: "/v1/x",
			headers: map[string]string{"Origin": "https://evil.example", "Cookie": "session=ok"},
			want:    listenerAnswer{status: 403, headers: []string{"Vary: Origin"}},
		},
		{
			desc:   "gRPC authorizer allows: its request headers and the removal; its response headers have no place in this protocol (dropped); corsauthz's Allow-Origin wins",
			method: "POST", host: "rpc.example.com", uri: "/v1/x",
			headers: map[string]string{"Origin": origin, "X-Token": "ok"},
			want: listenerAnswer{status: 200, headers: []string{
				"Access-Control-Allow-Origin: https://app.example.com",
				"Vary: Origin",
				"X-Envoy-Auth-Headers-To-Remove: x-token",
				"X-User: alice",
			}},
			grpcAsked: 1,
		},
		{
			desc:   "gRPC authorizer denies: its status, headers and body with the CORS headers",
			method: "POST", host: "rpc.example.com", uri: "/v1/x",
			headers: map[string]string{"Origin": origin},
			want: listenerAnswer{status: 401, headers: []string{
				"Access-Control-Allow-Origin: https://app.example.com",
				"Vary: Origin",
				"Www-Authenticate: Bearer",
			}, body: "token required"},
			grpcAsked: 1,
		},
		{
			desc:   "a policy without an authorizer answers as before",
			method: "GET", host: "plain.example.com", uri: "/v1/x",
			headers: map[string]string{"Origin": origin},
			want: listenerAnswer{status: 200, headers: []string{
				"Access-Control-Allow-Origin: https://app.example.com",
				"Vary: Origin",
			}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			httpBefore, grpcBefore := ta.HTTPAsked.Load(), len(ta.GRPCRequests())
			got := askHTTP(t, addr, tc.method, tc.host, tc.uri, tc.headers)
			if got.status != tc.want.status || got.body != tc.want.body {
				t.Errorf("answer %d %q, want %d %q", got.status, got.body, tc.want.status, tc.want.body)
			}
			if g, w := strings.Join(got.headers, "\n"), strings.Join(tc.want.headers, "\n"); g != w {
				t.Errorf("headers:\n%s\nwant:\n%s", g, w)
			}
			if n := ta.HTTPAsked.Load() - httpBefore; n != tc.httpAsked {
				t.Errorf("HTTP authorizer asked %d times, want %d", n, tc.httpAsked)
			}
			rs := ta.GRPCRequests()
			if n := len(rs) - grpcBefore; n != tc.grpcAsked {
				t.Errorf("gRPC authorizer asked %d times, want %d", n, tc.grpcAsked)
			}
			if tc.httpAsked > 0 {
				h := ta.LastHTTPHeaders()
				for name, want := range map[string]string{
					"X-Forwarded-Method": tc.method, "X-Forwarded-Proto": "https",
					"X-Forwarded-Host": tc.host, "X-Forwarded-Uri": tc.uri, "Cookie": tc.headers["Cookie"],
					"X-Auth-Request-Email": "", // not in the authorizer's headers: not sent
				} {
					if got := h.Get(name); got != want {
						t.Errorf("the HTTP authorizer got %s: %q, want %q", name, got, want)
					}
				}
			}
			if tc.grpcAsked > 0 {
				h := rs[len(rs)-1].GetAttributes().GetRequest().GetHttp()
				if h.GetMethod() != tc.method || h.GetHost() != tc.host || h.GetPath() != tc.uri || h.GetScheme() != "https" {
					t.Errorf("the gRPC authorizer got %s %s://%s%s, want %s https://%s%s",
						h.GetMethod(), h.GetScheme(), h.GetHost(), h.GetPath(), tc.method, tc.host, tc.uri)
				}
				for name, v := range tc.headers {
					if got := h.GetHeaders()[strings.ToLower(name)]; got != v {
						t.Errorf("the gRPC authorizer got %s: %q, want %q", name, got, v)
					}
				}
				for _, name := range []string{"x-forwarded-method", "x-forwarded-uri", "x-forwarded-host"} {
					if _, ok := h.GetHeaders()[name]; ok {
						t.Errorf("the gRPC authorizer got the listener's own %s", name)
					}
				}
			}
		})
	}
}

// TestHTTPListenerAuthorizerFails: an authorizer that cannot be asked
// makes the HTTP listener answer 503 with the CORS headers (fail closed),
// and on_error: allow lets the request on with the CORS headers.
func TestHTTPListenerAuthorizerFails(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + lis.Addr().String() // nobody listens there once closed
	lis.Close()
	cfg := fmt.Sprintf(`
authorizers:
  - name: closed
    http: {url: %[1]s/auth, timeout: 1s}
  - name: open
    http: {url: %[1]s/auth, timeout: 1s}
    on_error: allow
policies:
  - name: closed
    authorizer: closed
    match: {hosts: [closed.example.com]}
    allowed_origins: [https://app.example.com]
  - name: open
    authorizer: open
    match: {hosts: [open.example.com]}
    allowed_origins: [https://app.example.com]
`, down)
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, cfg)), server.Options{HTTPAddr: "127.0.0.1:0"})
	addr := ts.Srv.HTTPAddr().String()
	origin := map[string]string{"Origin": "https://app.example.com"}
	cors := []string{"Access-Control-Allow-Origin: https://app.example.com", "Vary: Origin"}

	got := askHTTP(t, addr, "GET", "closed.example.com", "/x", origin)
	if got.status != http.StatusServiceUnavailable || !strings.Contains(got.body, "could not be asked") {
		t.Errorf("failing closed: %d %q, want 503 saying the authorization service could not be asked", got.status, got.body)
	}
	if g, w := strings.Join(got.headers, "\n"), strings.Join(append(cors[:1:1], "Content-Type: text/plain; charset=utf-8", cors[1]), "\n"); g != w {
		t.Errorf("failing closed: headers:\n%s\nwant:\n%s", g, w)
	}

	got = askHTTP(t, addr, "GET", "open.example.com", "/x", origin)
	if got.status != http.StatusOK || got.body != "" {
		t.Errorf("failing open: %d %q, want 200", got.status, got.body)
	}
	if g, w := strings.Join(got.headers, "\n"), strings.Join(cors, "\n"); g != w {
		t.Errorf("failing open: headers:\n%s\nwant:\n%s", g, w)
	}
}
