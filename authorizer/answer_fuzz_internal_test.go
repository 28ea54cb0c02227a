package authorizer

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/policy"
)

// The answer readers (HTTP and gRPC) with Merge, fuzzed: whatever an
// authorizer answers, the outcome keeps the invariants every front end
// relies on (see Merge). Seeded from the behaviours of the agreement table
// (internal/agreement: allow with headers, deny with status and headers,
// Access-Control-* injection, X-Accel-Redirect, framing headers, 101,
// garbage, a 200 denial) and from answers past the limits.

const fuzzConfig = `
authorizers:
  - name: web
    http:
      url: http://127.0.0.1:1/auth
      upstream_headers: [x-auth-request-user]
      timeout: 1s
policies:
  - name: api
    authorizer: web
    allowed_origins: [https://app.example.com]
    allow_credentials: true
    exposed_headers: [X-Request-Id]
default_policy: api
`

// fuzzDecision is the decision for a GET from the app's origin, and the
// HTTP client of its authorizer.
func fuzzDecision(tb testing.TB) (policy.Decision, *httpClient) {
	tb.Helper()
	e, _, err := policy.Load("fuzz.yaml", []byte(fuzzConfig))
	if err != nil {
		tb.Fatal(err)
	}
	d, err := e.Decide(&policy.Request{Method: "GET", Host: "api.example.com", Path: "/", Origin: "https://app.example.com"})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := newHTTPClient(e.Authorizers()[0])
	if err != nil {
		tb.Fatal(err)
	}
	return d, c
}

// forbiddenOnAnswer are headers no outcome may send the browser.
var forbiddenOnAnswer = []string{"Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Upgrade", "Te", "Trailer"}

// checkOutcome fails t when out breaks one of Merge's invariants.
func checkOutcome(t *testing.T, d *policy.Decision, out *Outcome) {
	t.Helper()
	cors := map[string]string{}
	for _, h := range d.AppendHeaders(nil) {
		cors[http.CanonicalHeaderKey(h.Name)] += h.Value
	}
	if out.Pass == (out.Status != 0) {
		t.Fatalf("pass %v with status %d", out.Pass, out.Status)
	}
	if !out.Pass && (out.Status < 400 || out.Status > 599) {
		t.Fatalf("a direct answer with status %d", out.Status)
	}
	if len(out.Headers) > MaxAnswerHeaders+len(cors)+2 {
		t.Fatalf("%d headers on the answer", len(out.Headers))
	}
	lists := map[string][]policy.Header{"answer": out.Headers, "response": out.ResponseHeaders, "request": out.RequestHeaders}
	if ok := out.OkHTTPResponse(); ok != nil {
		for _, o := range ok.GetHeaders() {
			lists["ok_response headers"] = append(lists["ok_response headers"], policy.Header{Name: o.GetHeader().GetKey(), Value: o.GetHeader().GetValue()})
		}
	}
	for which, hs := range lists {
		for _, h := range hs {
			name := http.CanonicalHeaderKey(h.Name)
			if !sendable(h.Name, h.Value) && !(which == "answer" && cors[name] != "") {
				t.Fatalf("%s header %q: %q may not be sent", which, h.Name, h.Value)
			}
			if strings.HasPrefix(name, "Access-Control-") && (which != "answer" || !strings.Contains(cors[name], h.Value)) {
				t.Fatalf("%s header %s: %q is not corsauthz's", which, h.Name, h.Value)
			}
			if strings.HasPrefix(name, "X-Accel-") || strings.HasPrefix(name, "Proxy-") {
				t.Fatalf("%s header %s", which, h.Name)
			}
			for _, f := range forbiddenOnAnswer {
				if which != "request" && name == f {
					t.Fatalf("%s header %s", which, h.Name)
				}
			}
		}
	}
}

// httpSeeds are raw HTTP answers.
var httpSeeds = []string{
	"HTTP/1.1 202 Accepted\r\nX-Auth-Request-User: alice\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"login\":\"/start\"}",
	"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: https://evil.example\r\nAccess-Control-Allow-Credentials: true\r\nX-Auth-Request-User: alice\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 401 Unauthorized\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: *\r\nVary: Cookie\r\nContent-Length: 2\r\n\r\nno",
	"HTTP/1.1 401 Unauthorized\r\nX-Accel-Redirect: /public/granted\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 302 Found\r\nLocation: https://evil.example/\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
	"NOT HTTP AT ALL\r\n\r\n",
	"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nno\r\n0\r\nX-T: 1\r\n\r\n",
	"HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 503 Service Unavailable\r\n" + strings.Repeat("X-H: v\r\n", 101) + "Content-Length: 0\r\n\r\n",
}

func FuzzHTTPAnswerMerged(f *testing.F) {
	for _, s := range httpSeeds {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(httpSeeds[0]), true)
	d, c := fuzzDecision(f)
	req, _ := http.NewRequest("GET", "http://127.0.0.1:1/auth", nil)
	f.Fuzz(func(t *testing.T, raw []byte, failOpen bool) {
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), req)
		var a *Answer
		if err != nil {
			a = failed(err) // what the client makes of an answer it cannot read
		} else {
			defer resp.Body.Close()
			a = c.readAnswer(context.Background(), resp)
		}
		out := Merge(&d, a, failOpen)
		checkOutcome(t, &d, &out)
	})
}

func FuzzGRPCAnswerMerged(f *testing.F) {
	set := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
	}
	denied := func(code typev3.StatusCode, body string, hs ...*corev3.HeaderValueOption) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: code}, Headers: hs, Body: body,
			}},
		}
	}
	many := make([]*corev3.HeaderValueOption, MaxAnswerHeaders+1)
	for i := range many {
		many[i] = set("x-h", "v")
	}
	seeds := []*authv3.CheckResponse{
		{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{set("x-user", "alice")}, HeadersToRemove: []string{"x-token"},
		}}},
		{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{set("x-user", "alice"), set("access-control-allow-origin", "https://evil.example")},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{
				set("access-control-allow-origin", "https://evil.example"), set("access-control-allow-credentials", "true"),
				set("x-checked", "yes"), set("transfer-encoding", "chunked"),
			},
		}}},
		denied(typev3.StatusCode_OK, ""),
		denied(typev3.StatusCode_Found, "", set("location", "https://evil.example/")),
		denied(typev3.StatusCode_Unauthorized, "no", set("content-length", "999"), set("transfer-encoding", "chunked"),
			set("connection", "close"), set("keep-alive", "timeout=5"), set("x-accel-redirect", "/public/granted")),
		denied(typev3.StatusCode_Unauthorized, `{"login":"/start"}`, set("content-type", "application/json"), set("vary", "Cookie")),
		denied(typev3.StatusCode_Forbidden, "", many...),
		denied(typev3.StatusCode_Forbidden, "", set("x-bad\r\nname", "v"), set("x-ok", "bad\r\nvalue")),
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	d, _ := fuzzDecision(f)
	f.Fuzz(func(t *testing.T, raw []byte, failOpen bool) {
		resp := &authv3.CheckResponse{}
		var a *Answer
		if err := proto.Unmarshal(raw, resp); err != nil {
			a = failed(err) // what the gRPC client makes of it
		} else {
			a = answerOfCheck(resp)
		}
		out := Merge(&d, a, failOpen)
		checkOutcome(t, &d, &out)
	})
}
