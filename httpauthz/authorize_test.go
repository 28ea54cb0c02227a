package httpauthz_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/policy"
)

// authConfig puts an authorizer (at %s) behind "api".
const authConfig = `
authorizers:
  - name: auth
    http: {url: "%s/auth", headers: [cookie], timeout: 1s}
policies:
  - name: api
    authorizer: auth
    match: {hosts: [api.example.com]}
    allowed_origins: [https://app.example.com]
    allow_credentials: true
`

// TestOutcomeWrittenAsIs: what the handler tells the authorizer (the
// request the check describes, not the check's own headers) and how it
// writes the denial: the authorizer's status and body, its repeated
// Set-Cookie one line a cookie, every other name one line, the CORS
// headers merged in. The server package's tests ask real authorizers
// through the whole process; the agreement table every front end.
func TestOutcomeWrittenAsIs(t *testing.T) {
	var got http.Header
	var gotMu sync.Mutex
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotMu.Lock()
		got = r.Header.Clone()
		gotMu.Unlock()
		h := w.Header()
		h.Set("Location", "https://login.example.com/")
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		h.Set("Vary", "Cookie")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, "sign in")
	}))
	t.Cleanup(auth.Close)
	e, _, err := policy.Load("auth.yaml", []byte(fmt.Sprintf(authConfig, auth.URL)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := httpauthz.New(newCore(t, e, nil), httpauthz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, h)
	a := exchange(t, ts.Listener.Addr().String(), request("GET", "/check",
		"Host: corsauthz", "X-Original-Method: DELETE", "X-Original-Host: api.example.com", "X-Original-URI: /v1/o?id=7",
		"Origin: https://app.example.com", "Cookie: s=1", "Cookie: t=2"))
	if a.status != 401 || a.body != "sign in" {
		t.Fatalf("answer %d %q, want the authorizer's 401 \"sign in\"", a.status, a.body)
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
	gotMu.Lock()
	defer gotMu.Unlock()
	if got == nil {
		t.Fatal("the authorizer was not asked")
	}
	for name, want := range map[string]string{
		"X-Forwarded-Method": "DELETE", "X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/v1/o?id=7",
		"X-Forwarded-Proto": "http", "Cookie": "s=1,t=2",
	} {
		if v := got.Get(name); v != want {
			t.Errorf("the authorizer got %s: %q, want %q", name, v, want)
		}
	}
	for _, name := range []string{"X-Original-Uri", "X-Original-Host", "X-Original-Method"} {
		if v := got.Get(name); v != "" {
			t.Errorf("the check request's own %s (%q) was passed on as the request's", name, v)
		}
	}
}
