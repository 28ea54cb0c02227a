package authorizer_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

// forwardedPaths are request paths and what forward_path appends for
// them ("" when the request is refused).
var forwardedPaths = []struct {
	desc, path, want string
}{
	{desc: "plain", path: "/v1/orders?id=7", want: "/v1/orders?id=7"},
	{desc: "dot segments", path: "/v1/./a/../b", want: "/v1/b"},
	{desc: ".. cannot climb above /", path: "/../../etc/passwd", want: "/etc/passwd"},
	{desc: "%2e%2e counts as ..", path: "/public/%2e%2e/admin", want: "/admin"},
	{desc: "%2E and mixed case", path: "/public/%2E%2e/%2e/admin?q=../x", want: "/admin?q=../x"},
	{desc: "trailing ..", path: "/a/b/..", want: "/a/"},
	{desc: "trailing .", path: "/a/b/.", want: "/a/b/"},
	{desc: "empty segments kept", path: "/a//../b", want: "/a/b"},
	{desc: ".%2e", path: "/a/.%2e/b", want: "/b"},
	{desc: "dots inside a name stay", path: "/a/..b/c.d/...", want: "/a/..b/c.d/..."},
	{desc: "encoded slash refused", path: "/v1/a%2Fb", want: ""},
	{desc: "encoded slash, lower case", path: "/v1/a%2fb", want: ""},
	{desc: "encoded backslash refused", path: "/v1/%5c..%5cadmin", want: ""},
	{desc: "encoded backslash, upper case", path: "/v1/%5C", want: ""},
	{desc: "a backslash refused", path: `/v1/..\admin`, want: ""},
	{desc: "%2f in the query is the query's", path: "/v1?next=%2Fadmin", want: "/v1?next=%2Fadmin"},
	{desc: "no leading slash", path: "v1/x", want: "/v1/x"},
	{desc: "empty", path: "", want: "/"},
	{desc: "bytes a URL cannot hold are escaped", path: "/a b/\"<é>\x01?q=a b#frag", want: "/a%20b/%22%3C%C3%A9%3E%01?q=a%20b"},
	{desc: "a lone % is escaped", path: "/100%/x%zz?p=%", want: "/100%25/x%25zz?p=%25"},
	{desc: "a fragment is dropped", path: "/a#/../../b", want: "/a"},
}

func TestForwardedPath(t *testing.T) {
	t.Parallel()
	for _, tc := range forwardedPaths {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			got, ok := authorizer.ForwardedPath(tc.path)
			if !ok {
				got = ""
			}
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("ForwardedPath(%q) = %q, %v; want %q", tc.path, got, ok, tc.want)
			}
		})
	}
}

// TestForwardPathOnTheWire: what a real forward_path authorizer is asked,
// and that a refused path never reaches it, is answered 400 with the CORS
// headers, and is counted as refused.
func TestForwardPathOnTheWire(t *testing.T) {
	t.Parallel()
	d := decide(t, "creds.example.com", "https://app.example.com")
	for _, tc := range forwardedPaths {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			s, h := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
			cfg := httpAuthorizer(s.URL+"/authz/", 2*time.Second)
			cfg.HTTP.ForwardPath = true
			reg := prometheus.NewRegistry()
			p := authorizer.NewPool(nil, authorizer.NewMetrics(reg))
			t.Cleanup(p.Close)
			if err := p.Sync([]policy.Authorizer{cfg}); err != nil {
				t.Fatal(err)
			}
			a := p.Ask(context.Background(), "http", &authorizer.Request{Method: "GET", Scheme: "https", Host: "creds.example.com", Path: tc.path})
			out := authorizer.Merge(&d, a, false)
			got := h.requests()
			if tc.want == "" {
				if len(got) != 0 || out.Pass || out.Status != 400 || out.Result != authorizer.Refused ||
					headerMap(out.Headers)["Access-Control-Allow-Origin"][0] != "https://app.example.com" ||
					!strings.Contains(string(out.Body), "%2F") {
					t.Errorf("refused path: %d requests reached the authorizer; outcome %+v", len(got), out)
				}
				if n := counter(t, reg, "http", "refused"); n != 1 {
					t.Errorf("refused counted %v times", n)
				}
				return
			}
			if len(got) != 1 || !out.Pass {
				t.Fatalf("%d requests, outcome %+v (%v)", len(got), out, a.Err)
			}
			if uri := got[0].URL.RequestURI(); uri != "/authz"+tc.want {
				t.Errorf("asked %s, want /authz%s", uri, tc.want)
			}
			if fwd := got[0].Header.Get("X-Forwarded-Uri"); fwd != strings.ReplaceAll(tc.path, "\x01", "%01") {
				t.Errorf("X-Forwarded-Uri %q, want the request's %q", fwd, tc.path)
			}
		})
	}
}

// TestNoQueryInLogs: a failing authorizer's log line never carries the
// request's query (forward_path puts it in the URL net/http quotes in its
// errors) nor one an authorizer quotes in its own error message.
func TestNoQueryInLogs(t *testing.T) {
	t.Parallel()
	const secret = "access_token=SECRET-TOKEN"
	tests := []struct {
		desc string
		cfg  func(t *testing.T) policy.Authorizer
	}{
		{desc: "forward_path, connection refused", cfg: func(t *testing.T) policy.Authorizer {
			a := httpAuthorizer("http://"+refusedAddr(t)+"/authz", time.Second)
			a.HTTP.ForwardPath = true
			return a
		}},
		{desc: "forward_path, timeout", cfg: func(t *testing.T) policy.Authorizer {
			s, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
			a := httpAuthorizer(s.URL+"/authz", 100*time.Millisecond)
			a.HTTP.ForwardPath = true
			return a
		}},
		{desc: "forward_path, reset mid-answer", cfg: func(t *testing.T) policy.Authorizer {
			a := httpAuthorizer(rawHTTP(t, "HTTP/1.1 401 X\r\nContent-Length: 10\r\n\r\nab", 0), time.Second)
			a.HTTP.ForwardPath = true
			return a
		}},
		{desc: "url with a query (not forward_path), refused", cfg: func(t *testing.T) policy.Authorizer {
			return httpAuthorizer("http://"+refusedAddr(t)+"/authz?"+secret, time.Second)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			p := authorizer.NewPool(slog.New(slog.NewTextHandler(&logs, nil)), nil)
			t.Cleanup(p.Close)
			if err := p.Sync([]policy.Authorizer{tc.cfg(t)}); err != nil {
				t.Fatal(err)
			}
			a := p.Ask(context.Background(), "http", &authorizer.Request{Method: "GET", Scheme: "https", Host: "h", Path: "/v1/x?" + secret})
			if a.Result != authorizer.Error {
				t.Fatalf("result %v", a.Result)
			}
			if !strings.Contains(logs.String(), "authorizer failed") || strings.Contains(logs.String(), "SECRET") || strings.Contains(a.Err.Error(), "SECRET") {
				t.Errorf("log: %s\nerror: %v", logs.String(), a.Err)
			}
			t.Logf("log: %s", strings.TrimSpace(logs.String()))
		})
	}
}
