package server_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/internal/envoyheaders"
	"github.com/corsauthz/corsauthz/middleware"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

// upstreamWithCORS is an upstream that sets CORS headers of its own, which
// must never reach the browser, and a Vary that must be kept.
var upstreamWithCORS = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "https://upstream.example")
	w.Header().Set("Access-Control-Expose-Headers", "X-Upstream")
	w.Header().Set("Vary", "Accept-Encoding")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "upstream")
})

// httpAnswer is what the browser sees.
type httpAnswer struct {
	status  int
	headers string // "Name: value" lines, sorted
	body    string
}

func answerOf(rec *httptest.ResponseRecorder) httpAnswer {
	res := rec.Result()
	var lines []string
	for name, values := range res.Header {
		if name == "Content-Length" {
			continue
		}
		for _, v := range values {
			lines = append(lines, name+": "+v)
		}
	}
	slices.Sort(lines)
	return httpAnswer{status: res.StatusCode, headers: strings.Join(lines, "\n"), body: rec.Body.String()}
}

// asHTTPRequest is the browser request req describes, as net/http hands
// it to a handler.
func asHTTPRequest(req *corsauthzv1.DecideRequest) *http.Request {
	u, err := url.ParseRequestURI(req.Path)
	if err != nil {
		u = &url.URL{Path: req.Path}
	}
	r := &http.Request{Method: req.Method, URL: u, Host: req.Host, RequestURI: req.Path, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	for name, v := range map[string]string{
		"Origin":                                 req.Origin,
		"Access-Control-Request-Method":          req.AccessControlRequestMethod,
		"Access-Control-Request-Headers":         req.AccessControlRequestHeaders,
		"Access-Control-Request-Private-Network": req.AccessControlRequestPrivateNetwork,
	} {
		if v != "" {
			r.Header.Set(name, v)
		}
	}
	if req.OriginPresent && req.Origin == "" {
		r.Header["Origin"] = []string{""}
	}
	return r
}

// envoyAnswer is what an Envoy with the shipped configuration sends for
// req, given corsauthz's CheckResponse: a failed Check is status_on_error
// (503); a denied one is a local reply with its status and headers; an OK
// one is the upstream's response with its Access-Control-* headers removed
// at the route (contract §5) and response_headers_to_add applied.
func envoyAnswer(t *testing.T, authz authv3.AuthorizationClient, req *corsauthzv1.DecideRequest, upstream http.Handler) (httpAnswer, error) {
	resp, err := authz.Check(ctxTimeout(t), asCheckRequest(req))
	rec := httptest.NewRecorder()
	switch {
	case err != nil:
		rec.WriteHeader(http.StatusServiceUnavailable)
	case codes.Code(resp.GetStatus().GetCode()) != codes.OK:
		d := resp.GetDeniedResponse()
		envoyheaders.Apply(rec.Header(), d.GetHeaders())
		code := int(d.GetStatus().GetCode())
		if code == 0 {
			code = http.StatusForbidden
		}
		rec.WriteHeader(code)
		fmt.Fprint(rec, d.GetBody())
	default:
		up := httptest.NewRecorder()
		upstream.ServeHTTP(up, asHTTPRequest(req))
		for name, values := range up.Result().Header {
			if !strings.HasPrefix(name, "Access-Control-") {
				rec.Header()[name] = values
			}
		}
		envoyheaders.Apply(rec.Header(), resp.GetOkResponse().GetResponseHeadersToAdd())
		rec.WriteHeader(up.Code)
		rec.Body = up.Body
	}
	return answerOf(rec), err
}

// middlewares builds one Middleware per mode and policy name, lazily.
type middlewares struct {
	t    testing.TB
	addr string
	mu   sync.Mutex
	byID map[string]*middleware.Middleware
}

func (ms *middlewares) get(mode middleware.Mode, policyName string) *middleware.Middleware {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	id := string(mode) + "/" + policyName
	if m := ms.byID[id]; m != nil {
		return m
	}
	m, err := middleware.New(ctxTimeout(ms.t), middleware.Options{Address: ms.addr, Mode: mode, Policy: policyName})
	if err != nil {
		ms.t.Fatalf("middleware.New(%s): %v", id, err)
	}
	select {
	case <-m.Ready():
	default:
		ms.t.Fatalf("middleware.New(%s) returned before it had a configuration", id)
	}
	ms.t.Cleanup(func() { m.Close() })
	ms.byID[id] = m
	return m
}

// TestMiddlewareAgreesWithEnvoy: over the table of the Decide-vs-Check
// agreement test, the middleware's HTTP answers, in both modes, are the
// ones an Envoy in front of corsauthz sends.
func TestMiddlewareAgreesWithEnvoy(t *testing.T) {
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{})
	ms := &middlewares{t: t, addr: ts.srv.GRPCAddr().String(), byID: map[string]*middleware.Middleware{}}
	for _, tt := range sameDecisionCases {
		t.Run(tt.desc, func(t *testing.T) { assertMiddlewareAgrees(t, ts, ms, tt.req) })
	}
}

// assertMiddlewareAgrees checks the middleware's answers to req, in both
// modes, against Envoy's.
func assertMiddlewareAgrees(t *testing.T, ts *testServer, ms *middlewares, req *corsauthzv1.DecideRequest) {
	t.Helper()
	want, checkErr := envoyAnswer(t, ts.authz(), req, upstreamWithCORS)
	for _, mode := range []middleware.Mode{middleware.ModeLocal, middleware.ModeRemote} {
		if mode == middleware.ModeLocal && status.Code(checkErr) == codes.InvalidArgument {
			// A request past the service's size limits: a limit of the
			// network API, not of the decision; in process the gateway's
			// own HTTP limits apply (Envoy's are lower).
			continue
		}
		rec := httptest.NewRecorder()
		ms.get(mode, req.Policy).Wrap(upstreamWithCORS).ServeHTTP(rec, asHTTPRequest(req))
		if got := answerOf(rec); got != want {
			t.Errorf("%s mode, %v:\n got %d %q\n%s\nwant %d %q (Envoy)\n%s", mode, req, got.status, got.body, got.headers, want.status, want.body, want.headers)
		}
	}
}

// fuzzPolicies are the policy names the fuzz test names, one middleware
// each, built up front: those of the agreement table, and more.
func fuzzPolicies() []string {
	names := []string{"", "api", "strict", "shadow", "public", "nope"}
	for _, tt := range sameDecisionCases {
		if !slices.Contains(names, tt.req.Policy) {
			names = append(names, tt.req.Policy)
		}
	}
	return names
}

// FuzzMiddlewareAgreesWithEnvoy: on any request a browser could send
// through Envoy, the middleware answers as Envoy does. Seeded from the
// agreement table.
func FuzzMiddlewareAgreesWithEnvoy(f *testing.F) {
	fuzzPolicies := fuzzPolicies()
	for _, tt := range sameDecisionCases {
		r := tt.req
		f.Add(r.Method, r.Host, r.Path, uint8(slices.Index(fuzzPolicies, r.Policy)), r.Origin, r.OriginPresent,
			r.AccessControlRequestMethod, r.AccessControlRequestHeaders, r.AccessControlRequestPrivateNetwork)
	}
	ts := startServer(f, policy.NewHolder(loadEngine(f, testConfig)), server.Options{})
	ms := &middlewares{t: f, addr: ts.srv.GRPCAddr().String(), byID: map[string]*middleware.Middleware{}}
	for _, name := range fuzzPolicies {
		ms.get(middleware.ModeLocal, name)
		ms.get(middleware.ModeRemote, name)
	}
	f.Fuzz(func(t *testing.T, method, host, path string, policyIndex uint8, origin string, originPresent bool, acrm, acrh, acrpn string) {
		for _, v := range []string{method, host, path, origin, acrm, acrh, acrpn} {
			// Envoy refuses such requests before ext_authz, and protobuf
			// strings must be UTF-8.
			if !utf8.ValidString(v) || !httpguts.ValidHeaderFieldValue(v) {
				return
			}
		}
		if !httpguts.ValidHeaderFieldName(method) || host == "" {
			return
		}
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := &corsauthzv1.DecideRequest{
			Method: method, Host: host, Path: path, Policy: fuzzPolicies[int(policyIndex)%len(fuzzPolicies)],
			Origin: origin, OriginPresent: originPresent || origin != "", AccessControlRequestMethod: acrm, AccessControlRequestHeaders: acrh, AccessControlRequestPrivateNetwork: acrpn,
		}
		assertMiddlewareAgrees(t, ts, ms, req)
	})
}
