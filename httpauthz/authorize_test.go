package httpauthz_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/policy"
)

// authConfig puts an authorizer behind "api".
const authConfig = `
authorizers:
  - name: auth
    http: {url: "http://127.0.0.1:9/auth", headers: [cookie], timeout: 1s}
policies:
  - name: api
    authorizer: auth
    match: {hosts: [api.example.com]}
    allowed_origins: [https://app.example.com]
    allow_credentials: true
`

// TestOutcomeWrittenAsIs: what the handler hands the Ask (the request as
// an authorizer is told of it) and how it writes the outcome: a denial's
// repeated Set-Cookie stays one line a cookie, every other name one line.
// The server package's tests ask real authorizers.
func TestOutcomeWrittenAsIs(t *testing.T) {
	e, _, err := policy.Load("auth.yaml", []byte(authConfig))
	if err != nil {
		t.Fatal(err)
	}
	var got *authorizer.Request
	d := &engineDecider{engines: policy.NewHolder(e), ask: func(_ context.Context, dec *policy.Decision, r *authorizer.Request) authorizer.Outcome {
		got = r
		return authorizer.Merge(dec, &authorizer.Answer{Result: authorizer.Deny, Status: 302, Headers: []policy.Header{
			{Name: "Location", Value: "https://login.example.com/"},
			{Name: "Set-Cookie", Value: "a=1"},
			{Name: "Set-Cookie", Value: "b=2", Append: true},
			{Name: "Vary", Value: "Cookie"},
		}}, false)
	}}
	h, err := httpauthz.New(d, httpauthz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	a := exchange(t, ts.Listener.Addr().String(), request("GET", "/check",
		"Host: corsauthz", "X-Original-Method: DELETE", "X-Original-Host: api.example.com", "X-Original-URI: /v1/o?id=7",
		"Origin: https://app.example.com", "Cookie: s=1", "Cookie: t=2"))
	if a.status != 302 {
		t.Fatalf("status %d, want the authorizer's 302", a.status)
	}
	want := []string{
		"Access-Control-Allow-Credentials: true",
		"Access-Control-Allow-Origin: https://app.example.com",
		"Vary: Cookie, Origin",
	}
	if !slices.Equal(a.headers, want) {
		t.Errorf("CORS headers:\n%s\nwant:\n%s", strings.Join(a.headers, "\n"), strings.Join(want, "\n"))
	}
	if a.lines["Set-Cookie"] != 2 || a.lines["Location"] != 1 {
		t.Errorf("Set-Cookie on %d lines, Location on %d: want 2 and 1", a.lines["Set-Cookie"], a.lines["Location"])
	}
	if a.lines["Content-Type"] != 0 {
		t.Errorf("a Content-Type the authorizer did not send")
	}
	if got == nil {
		t.Fatal("the authorizer was not asked")
	}
	if got.Method != "DELETE" || got.Host != "api.example.com" || got.Path != "/v1/o?id=7" || got.Scheme != "http" {
		t.Errorf("asked about %s %s://%s%s, want DELETE http://api.example.com/v1/o?id=7", got.Method, got.Scheme, got.Host, got.Path)
	}
	if got.Headers["cookie"] != "s=1,t=2" || got.Headers["origin"] != "https://app.example.com" {
		t.Errorf("headers %v: want cookie s=1,t=2 and the origin", got.Headers)
	}
	for _, name := range []string{"x-original-uri", "x-original-host", "x-original-method", "connection"} {
		if _, ok := got.Headers[name]; ok {
			t.Errorf("the check request's own %s was passed on as the request's", name)
		}
	}
}
