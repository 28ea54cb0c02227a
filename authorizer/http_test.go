package authorizer_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

// TestHTTPMerge asks a real HTTP authorizer and merges its answer with a
// credentialed CORS decision for https://app.example.com.
func TestHTTPMerge(t *testing.T) {
	t.Parallel()
	corsAllowed := map[string][]string{
		"Access-Control-Allow-Origin":      {"https://app.example.com"},
		"Access-Control-Allow-Credentials": {"true"},
		"Access-Control-Expose-Headers":    {"X-Request-Id"},
		"Vary":                             {"Origin"},
	}
	with := func(base map[string][]string, extra map[string][]string) map[string][]string {
		m := map[string][]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	big := strings.Repeat("x", authorizer.MaxBodyBytes)
	tests := []struct {
		desc     string
		answer   func(w http.ResponseWriter, r *http.Request)
		failOpen bool
		want     authorizer.Outcome
		headers  map[string][]string // of the outcome
	}{
		{
			desc: "202 allows: exactly upstream_headers go upstream, the absent one is removed",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Auth-Request-User", "alice")
				w.Header().Set("X-Other", "not passed")
				w.WriteHeader(http.StatusAccepted)
			},
			want: authorizer.Outcome{Result: authorizer.Allow, Pass: true,
				RequestHeaders:       []policy.Header{{Name: "x-auth-request-user", Value: "alice"}},
				RemoveRequestHeaders: []string{"x-auth-request-email"}},
			headers: corsAllowed,
		},
		{
			desc: "200 with both upstream headers and a body",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Auth-Request-User", "alice")
				w.Header().Set("X-Auth-Request-Email", "alice@example.com")
				w.Write([]byte("ok"))
			},
			want: authorizer.Outcome{Result: authorizer.Allow, Pass: true, RequestHeaders: []policy.Header{
				{Name: "x-auth-request-user", Value: "alice"}, {Name: "x-auth-request-email", Value: "alice@example.com"}}},
			headers: corsAllowed,
		},
		{
			desc: "401 denies: status, headers and body with the CORS headers; corsauthz's Allow-Origin wins, both Vary kept",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Access-Control-Allow-Origin", "*")
				w.Header().Set("Vary", "Cookie")
				w.Header().Set("Www-Authenticate", `Bearer realm="api"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(`{"error":"login"}`))
			},
			want: authorizer.Outcome{Result: authorizer.Deny, Status: 401, Body: []byte(`{"error":"login"}`)},
			headers: with(corsAllowed, map[string][]string{
				"Vary":             {"Cookie, Origin"},
				"Www-Authenticate": {`Bearer realm="api"`},
				"Content-Type":     {"application/json"},
			}),
		},
		{
			desc: "302 to the login page is no denial status: 403, with its headers and the CORS headers, two cookies kept apart",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Add("Set-Cookie", "a=1")
				w.Header().Add("Set-Cookie", "b=2")
				http.Redirect(w, r, "https://login.example.com/start", http.StatusFound)
			},
			want: authorizer.Outcome{Result: authorizer.Deny, Status: 403, Body: []byte("<a href=\"https://login.example.com/start\">Found</a>.\n\n")},
			headers: with(corsAllowed, map[string][]string{
				"Location":     {"https://login.example.com/start"},
				"Set-Cookie":   {"a=1", "b=2"},
				"Content-Type": {"text/html; charset=utf-8"},
			}),
		},
		{
			desc:    "403 with an empty body",
			answer:  func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) },
			want:    authorizer.Outcome{Result: authorizer.Deny, Status: 403},
			headers: corsAllowed,
		},
		{
			desc: "a body of exactly the limit is sent on",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(big))
			},
			want:    authorizer.Outcome{Result: authorizer.Deny, Status: 401, Body: []byte(big)},
			headers: with(corsAllowed, map[string][]string{"Content-Type": {"text/plain"}}),
		},
		{
			desc: "a body past the limit is a failure: 503 with the CORS headers",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(big + "x"))
			},
			want:    authorizer.Outcome{Result: authorizer.Error, Status: 503, Body: []byte("corsauthz: the authorization service could not be asked\n")},
			headers: with(corsAllowed, map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}),
		},
		{
			desc: "a failure with on_error: allow passes with the CORS headers only, the client's own upstream headers removed",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusUnauthorized)
				w.Write([]byte(big + "x"))
			},
			failOpen: true,
			want:     authorizer.Outcome{Result: authorizer.Error, Pass: true, RemoveRequestHeaders: []string{"x-auth-request-user", "x-auth-request-email"}},
			headers:  corsAllowed,
		},
	}
	d := decide(t, "creds.example.com", "https://app.example.com")
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			s, _ := startHTTP(t, tc.answer)
			c := newClient(t, httpAuthorizer(s.URL+"/oauth2/auth", 2*time.Second))
			a := c.Ask(context.Background(), &authorizer.Request{Check: checkRequest("GET", "creds.example.com", "/v1/x", nil)})
			got := authorizer.Merge(&d, a, tc.failOpen)
			gotHeaders := headerMap(got.Headers)
			delete(gotHeaders, "Date")
			got.Headers = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Merge = %+v\nwant %+v (answer err: %v)", got, tc.want, a.Err)
			}
			if !reflect.DeepEqual(gotHeaders, tc.headers) {
				t.Errorf("headers = %v\nwant %v", gotHeaders, tc.headers)
			}
		})
	}
}

// TestHTTPRequestSent checks what the authorizer is sent.
func TestHTTPRequestSent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc        string
		path        string
		forwardPath bool
		reqPath     string
		wantURI     string
	}{
		{desc: "forward_path false: url exactly, its query included", path: "/oauth2/auth?rd=1", reqPath: "/v1/orders?id=7", wantURI: "/oauth2/auth?rd=1"},
		{desc: "forward_path true: url's path then the request's path and query", path: "/authz/", forwardPath: true, reqPath: "/v1/orders?id=7", wantURI: "/authz/v1/orders?id=7"},
		{desc: "forward_path true, escapes kept, dot segments removed", path: "/authz", forwardPath: true, reqPath: "/v1/a%20b/./c/../d?q=%20", wantURI: "/authz/v1/a%20b/d?q=%20"},
		{desc: "forward_path true, %2e%2e cannot climb out of url's path", path: "/authz/", forwardPath: true, reqPath: "/v1/%2e%2e/%2E%2e/../admin?x=1", wantURI: "/authz/admin?x=1"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			s, h := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
			cfg := httpAuthorizer(s.URL+tc.path, 2*time.Second)
			cfg.HTTP.ForwardPath = tc.forwardPath
			c := newClient(t, cfg)
			req := checkRequest("DELETE", "creds.example.com", tc.reqPath, map[string]string{
				"cookie": "_oauth2_proxy=abc", "authorization": "Bearer t", "x-secret": "not sent",
				"x-forwarded-method": "forged",
			})
			if a := c.Ask(context.Background(), &authorizer.Request{Check: req}); a.Result != authorizer.Allow {
				t.Fatalf("Ask = %v (%v)", a.Result, a.Err)
			}
			got := h.requests()[0]
			if got.Method != "GET" || got.URL.RequestURI() != tc.wantURI {
				t.Errorf("sent %s %s, want GET %s", got.Method, got.URL.RequestURI(), tc.wantURI)
			}
			want := map[string]string{
				"X-Forwarded-Method": "DELETE", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "creds.example.com",
				"X-Forwarded-Uri": tc.reqPath, "Cookie": "_oauth2_proxy=abc", "Authorization": "Bearer t", "X-Secret": "",
			}
			for k, v := range want {
				if g := got.Header.Get(k); g != v {
					t.Errorf("%s = %q, want %q", k, g, v)
				}
			}
		})
	}
}

// TestHTTPFailures: every way an HTTP authorizer can fail is a 503 with
// the CORS headers, never a pass.
func TestHTTPFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		desc string
		url  func(t *testing.T) string
	}{
		{desc: "connection refused", url: func(t *testing.T) string { return "http://" + refusedAddr(t) + "/auth" }},
		{desc: "hangs past the timeout", url: func(t *testing.T) string {
			s, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
			return s.URL
		}},
		{desc: "headers then a body that hangs past the timeout", url: func(t *testing.T) string {
			s, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusUnauthorized)
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			})
			return s.URL
		}},
		{desc: "answers garbage", url: func(t *testing.T) string {
			return "http://" + rawServer(t, func(c net.Conn) {
				bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("this is not HTTP\r\n\r\n"))
			})
		}},
		{desc: "resets before answering", url: func(t *testing.T) string {
			return "http://" + rawServer(t, func(c net.Conn) { bufio.NewReader(c).ReadString('\n'); resetConn(c) })
		}},
		{desc: "resets mid-answer", url: func(t *testing.T) string {
			return "http://" + rawServer(t, func(c net.Conn) {
				bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\nX-Auth-Request-User: alice\r\n\r\nonly ten.."))
				time.Sleep(20 * time.Millisecond)
				resetConn(c)
			})
		}},
		{desc: "closes mid-answer", url: func(t *testing.T) string {
			return "http://" + rawServer(t, func(c net.Conn) {
				bufio.NewReader(c).ReadString('\n')
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"))
			})
		}},
	}
	d := decide(t, "creds.example.com", "https://app.example.com")
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, httpAuthorizer(tc.url(t), 200*time.Millisecond))
			start := time.Now()
			a := c.Ask(context.Background(), &authorizer.Request{Check: checkRequest("GET", "creds.example.com", "/v1/x", nil)})
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("Ask took %s: the timeout did not fire", elapsed)
			}
			if a.Result != authorizer.Error || a.Err == nil {
				t.Fatalf("Ask = %v, %v; want an Error", a.Result, a.Err)
			}
			t.Logf("error: %v", a.Err)
			out := authorizer.Merge(&d, a, false)
			if out.Pass || out.Status != 503 || headerMap(out.Headers)["Access-Control-Allow-Origin"][0] != "https://app.example.com" {
				t.Errorf("Merge = %+v, want a 503 with the CORS headers", out)
			}
		})
	}
}

// TestMergeDecisions: a "*" policy's headers and a report-only policy
// (no CORS headers, the authorization still applies).
func TestMergeDecisions(t *testing.T) {
	t.Parallel()
	deny := &authorizer.Answer{Result: authorizer.Deny, Status: 401, Headers: []policy.Header{
		{Name: "Access-Control-Allow-Origin", Value: "https://evil.example"}, {Name: "vary", Value: "Cookie"}}}
	tests := []struct {
		desc    string
		d       policy.Decision
		answer  *authorizer.Answer
		headers map[string][]string
		status  int
	}{
		{desc: "* policy denial", d: decide(t, "any.example.com", "https://x.example"), answer: deny, status: 401,
			headers: map[string][]string{"Access-Control-Allow-Origin": {"*"}, "Vary": {"Cookie"}}},
		{desc: "report_only denial: the authorizer's answer alone, without its CORS header", d: decide(t, "report.example.com", "https://evil.example"), answer: deny, status: 401,
			headers: map[string][]string{"Vary": {"Cookie"}}},
		{desc: "no Origin denial: corsauthz's Vary: Origin merged with the authorizer's, its Allow-Origin dropped (only corsauthz speaks CORS)",
			d: decide(t, "creds.example.com", ""), answer: deny, status: 401,
			headers: map[string][]string{"Vary": {"Cookie, Origin"}}},
		{desc: "report_only failure: 503 without CORS headers", d: decide(t, "report.example.com", "https://app.example.com"),
			answer: &authorizer.Answer{Result: authorizer.Error}, status: 503,
			headers: map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			out := authorizer.Merge(&tc.d, tc.answer, false)
			if out.Pass || out.Status != tc.status {
				t.Errorf("Merge = %+v, want status %d", out, tc.status)
			}
			if got := headerMap(out.Headers); !reflect.DeepEqual(got, tc.headers) {
				t.Errorf("headers = %v, want %v", got, tc.headers)
			}
		})
	}
}
