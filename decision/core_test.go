package decision_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/policy"
)

const coreConfig = `
authorizers:
  - name: sso
    http: {url: "%s/auth", headers: [cookie], timeout: 2s}
policies:
  - name: api
    authorizer: sso
    match: {hosts: [api.example.com]}
    allowed_origins: [https://app.example.com]
    allowed_methods: [DELETE]
  - name: open
    match: {hosts: [open.example.com]}
    allowed_origins: [https://app.example.com]
    reject_disallowed_origins: true
  - name: shadow
    match: {hosts: [shadow.example.com]}
    allowed_origins: [https://app.example.com]
    reject_disallowed_origins: true
    report_only: true
`

// source is a decision.Source for a request with the cookie given.
type source struct{ cookie string }

func (s source) AuthorizerRequest(string) *authorizer.Request {
	return &authorizer.Request{Method: "GET", Scheme: "https", Host: "api.example.com", Path: "/", Headers: map[string]string{"cookie": s.cookie}}
}

func newCore(t *testing.T, logs *bytes.Buffer) *decision.Core {
	t.Helper()
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Cookie") != "ok" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "sign in")
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(auth.Close)
	e, _, err := policy.Load("core.yaml", []byte(fmt.Sprintf(coreConfig, auth.URL)))
	if err != nil {
		t.Fatal(err)
	}
	var logger *slog.Logger
	if logs != nil {
		logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c := decision.New(policy.NewHolder(e), decision.Options{Logger: logger})
	if err := c.Sync(e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestDecide(t *testing.T) {
	c := newCore(t, nil)
	for _, tc := range []struct {
		desc    string
		req     policy.Request
		src     decision.Source
		action  decision.Action
		status  int
		headers []string
		body    string
		asked   string
	}{
		{desc: "no policy: pass, nothing added", req: policy.Request{Method: "GET", Host: "other.example.com", Path: "/"}, action: decision.Pass},
		{desc: "preflight: answered, the authorizer not asked", action: decision.Respond, status: 204,
			req:     policy.Request{Method: "OPTIONS", Host: "api.example.com", Path: "/", Origin: "https://app.example.com", OriginPresent: true, RequestMethod: "DELETE"},
			headers: []string{"Access-Control-Allow-Origin: https://app.example.com", "Access-Control-Allow-Methods: DELETE", "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}},
		{desc: "authorizer denies: its status and body, with the CORS headers", action: decision.Respond, status: 401, body: "sign in", asked: "sso",
			req: policy.Request{Method: "DELETE", Host: "api.example.com", Path: "/", Origin: "https://app.example.com", OriginPresent: true}, src: source{},
			headers: []string{"Content-Type: text/plain; charset=utf-8", "Access-Control-Allow-Origin: https://app.example.com", "Vary: Origin"}},
		{desc: "authorizer allows: pass with the CORS headers", action: decision.Pass, asked: "sso",
			req: policy.Request{Method: "DELETE", Host: "api.example.com", Path: "/", Origin: "https://app.example.com", OriginPresent: true}, src: source{cookie: "ok"},
			headers: []string{"Access-Control-Allow-Origin: https://app.example.com", "Vary: Origin"}},
		{desc: "nothing to send the authorizer: fails closed, 503", action: decision.Respond, status: 503, asked: "sso",
			req:     policy.Request{Method: "GET", Host: "api.example.com", Path: "/"},
			headers: []string{"Vary: Origin", "Content-Type: text/plain; charset=utf-8"}},
		{desc: "reject_disallowed_origins: 403", action: decision.Respond, status: 403,
			req: policy.Request{Method: "GET", Host: "open.example.com", Path: "/", Origin: "https://evil.example", OriginPresent: true}, headers: []string{"Vary: Origin"}},
		{desc: "report_only: pass, nothing added", action: decision.Pass,
			req: policy.Request{Method: "GET", Host: "shadow.example.com", Path: "/", Origin: "https://evil.example", OriginPresent: true}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			out := c.Decide(context.Background(), decision.FrontEndHTTP, &tc.req, tc.src)
			if out.Action != tc.action || out.Status != tc.status || out.Authorizer != tc.asked {
				t.Errorf("action %v status %d authorizer %q, want %v %d %q", out.Action, out.Status, out.Authorizer, tc.action, tc.status, tc.asked)
			}
			var got []string
			for _, h := range out.AppendHeaders(nil) {
				got = append(got, h.Name+": "+h.Value)
			}
			if !slices.Equal(got, tc.headers) {
				t.Errorf("headers %q, want %q", got, tc.headers)
			}
			if string(out.Body) != tc.body && !(tc.status == 503 && len(out.Body) > 0) {
				t.Errorf("body %q, want %q", out.Body, tc.body)
			}
		})
	}
}

func TestDecideFailures(t *testing.T) {
	var logs bytes.Buffer
	c := newCore(t, &logs)
	out := c.Decide(context.Background(), decision.FrontEndExtAuthz, &policy.Request{Method: "GET", Host: "api.example.com", Path: "/", Policy: "nope"}, nil)
	if out.Action != decision.Fail || out.Failure.Kind != decision.UnknownPolicy || !errors.Is(out.Failure, policy.ErrUnknownPolicy) {
		t.Errorf("unknown policy: %+v, want a Fail of kind UnknownPolicy wrapping policy.ErrUnknownPolicy", out)
	}
	none := decision.New(policy.NewHolder(nil), decision.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	out = none.Decide(context.Background(), decision.FrontEndDecisionAPI, &policy.Request{Method: "GET", Host: "x", Path: "/"}, nil)
	if out.Action != decision.Fail || out.Failure.Kind != decision.NoConfiguration || !errors.Is(out.Failure, decision.ErrNoConfiguration) {
		t.Errorf("no configuration: %+v, want a Fail of kind NoConfiguration", out)
	}
	f := c.Refused(context.Background(), decision.FrontEndHTTP, strings.Repeat("é", 1000))
	if f.Kind != decision.Unreadable || len(f.Message) > 400 || !strings.HasSuffix(f.Message, "bytes]") {
		t.Errorf("refusal %+v: want Unreadable, its message cut", f)
	}
	for _, want := range []string{
		`msg="request refused: configuration mismatch" front_end=ext_authz`,
		`msg="request refused: no configuration loaded" front_end=decision_api`,
		`msg="request refused: unreadable request" front_end=http`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log has no line with %s:\n%s", want, logs.String())
		}
	}
}
