package agreement_test

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

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/internal/limits"
	th "github.com/corsauthz/corsauthz/internal/testharness"
	"github.com/corsauthz/corsauthz/middleware"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

// sameDecisionCases are requests asked both through ext_authz Check and
// through the decision API's Decide; the answers must be the same.
var sameDecisionCases = []struct {
	desc string
	req  *corsauthzv1.DecideRequest
}{
	{desc: "no Origin", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/v1/x"}},
	{desc: "no Origin, reject_disallowed_origins", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "strict.example.com", Path: "/"}},
	{desc: "no Origin, * policy", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "open.example.com", Path: "/"}},
	{desc: "no Origin, report only", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shadow.example.com", Path: "/"}},
	{desc: "no Origin, no policy", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "other.example.com", Path: "/"}},
	{desc: "no Origin, OPTIONS with a request method", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/", AccessControlRequestMethod: "PUT"}},
	{desc: "empty Origin", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", OriginPresent: true}},
	{desc: "empty Origin, reject_disallowed_origins", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "strict.example.com", Path: "/", OriginPresent: true}},
	{desc: "empty Origin, * policy", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "open.example.com", Path: "/", OriginPresent: true}},
	{desc: "empty Origin, preflight", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/", OriginPresent: true, AccessControlRequestMethod: "PUT"}},
	{desc: "group, app", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shared.example.com", Path: "/v1/x", Origin: "https://app.example.com"}},
	{desc: "group, partner", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shared.example.com", Path: "/v1", Origin: "https://partner.example.net"}},
	{desc: "group, no Origin", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shared.example.com", Path: "/v1"}},
	{desc: "named group, partner", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "other.example.com", Path: "/", Origin: "https://partner.example.net", Policy: "app,partners"}},
	{desc: "segment boundary", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shared.example.com", Path: "/v1x", Origin: "https://app.example.com"}},
	{desc: "no policy for the host", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "other.example.com", Path: "/", Origin: "https://app.example.com"}},
	{desc: "actual, allowed", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com"}},
	{desc: "actual, wildcard origin", req: &corsauthzv1.DecideRequest{Method: "POST", Host: "api.example.com", Path: "/v1/x", Origin: "https://pr-1.preview.example.com"}},
	{desc: "actual, origin not allowed", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/v1/x", Origin: "https://evil.example.net"}},
	{desc: "actual, origin rejected with 403", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "strict.example.com", Path: "/", Origin: "https://evil.example.net"}},
	{desc: "actual, report only", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "shadow.example.com", Path: "/", Origin: "https://evil.example.net"}},
	{desc: "preflight, allowed", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "content-type,authorization"}},
	{desc: "preflight, private network", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: "GET", AccessControlRequestPrivateNetwork: "true"}},
	{desc: "preflight, method not allowed", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: "PATCH"}},
	{desc: "preflight, header not allowed", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: "PUT", AccessControlRequestHeaders: "x-other"}},
	{desc: "preflight, origin not allowed", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x", Origin: "http://app.example.com", AccessControlRequestMethod: "PUT"}},
	{desc: "preflight, report only", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "shadow.example.com", Path: "/", Origin: "https://evil.example.net", AccessControlRequestMethod: "PUT"}},
	{desc: "named policy, any origin", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "other.example.com", Path: "/", Origin: "null", Policy: "public"}},
	{desc: "named policy, preflight", req: &corsauthzv1.DecideRequest{Method: "OPTIONS", Host: "other.example.com", Path: "/", Origin: "https://x.test", AccessControlRequestMethod: "GET", Policy: "public"}},
	{desc: "unknown named policy", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: "https://app.example.com", Policy: "nope"}},
	{desc: "path beyond the limit", req: &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/" + strings.Repeat("a", limits.PathLen), Origin: "https://app.example.com"}},
}

// checkAnswer is what a gateway does with a Check response, in the terms of
// the decision API.
type answer struct {
	code    codes.Code
	action  corsauthzv1.Action
	status  int32
	headers []string // "Name: value (action)"
}

func fromCheck(resp *authv3.CheckResponse, err error) answer {
	if err != nil {
		return answer{code: status.Code(err)}
	}
	a := answer{action: corsauthzv1.Action_ACTION_CONTINUE}
	options := resp.GetOkResponse().GetResponseHeadersToAdd()
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		a.action = corsauthzv1.Action_ACTION_RESPOND
		a.status = int32(resp.GetDeniedResponse().GetStatus().GetCode())
		options = resp.GetDeniedResponse().GetHeaders()
	}
	for _, o := range options {
		action := "replace"
		if o.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			action = "append"
		}
		a.headers = append(a.headers, o.GetHeader().GetKey()+": "+o.GetHeader().GetValue()+" ("+action+")")
	}
	return a
}

func fromDecide(resp *corsauthzv1.DecideResponse, err error) answer {
	if err != nil {
		return answer{code: status.Code(err)}
	}
	a := answer{action: resp.GetAction(), status: resp.GetHttpStatus()}
	for _, h := range resp.GetHeaders() {
		action := "replace"
		if h.GetAction() == corsauthzv1.HeaderAction_HEADER_ACTION_APPEND {
			action = "append"
		}
		a.headers = append(a.headers, h.GetName()+": "+h.GetValue()+" ("+action+")")
	}
	return a
}

func TestDecideAgreesWithCheck(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	decisions := corsauthzv1.NewDecisionServiceClient(ts.Conn)
	for _, tt := range sameDecisionCases {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			fromC := fromCheck(ts.Authz().Check(th.CtxTimeout(t), th.AsCheckRequest(tt.req)))
			for _, omit := range []bool{false, true} {
				req := proto.CloneOf(tt.req)
				req.OmitReasons = omit
				fromD := fromDecide(decisions.Decide(th.CtxTimeout(t), req))
				if fromC.code != fromD.code || fromC.action != fromD.action || fromC.status != fromD.status ||
					strings.Join(fromC.headers, "\n") != strings.Join(fromD.headers, "\n") {
					t.Errorf("omit_reasons=%t:\nCheck:  %+v\nDecide: %+v", omit, fromC, fromD)
				}
			}
		})
	}
}

// fromHTTP is what a gateway does with the HTTP listener's answer, in the
// terms of the decision API: Access-Control-* replace the upstream's, Vary
// is appended to it.
func fromHTTP(t *testing.T, resp *http.Response, body string) answer {
	t.Helper()
	switch resp.StatusCode {
	case 200:
		a := answer{action: corsauthzv1.Action_ACTION_CONTINUE}
		a.headers = httpHeaders(t, resp)
		return a
	case 204, 403:
		return answer{action: corsauthzv1.Action_ACTION_RESPOND, status: int32(resp.StatusCode), headers: httpHeaders(t, resp)}
	case 431, 400:
		return answer{code: codes.InvalidArgument}
	case 503:
		if strings.Contains(body, "X-Corsauthz-Policy names no configured policy") {
			return answer{code: codes.FailedPrecondition}
		}
		return answer{code: codes.Unavailable}
	}
	t.Errorf("HTTP status %d (%q)", resp.StatusCode, body)
	return answer{}
}

func httpHeaders(t *testing.T, resp *http.Response) []string {
	var out []string
	for name, vs := range resp.Header {
		if !strings.HasPrefix(name, "Access-Control-") && name != "Vary" {
			continue
		}
		if len(vs) != 1 {
			t.Errorf("%s on %d lines, want one", name, len(vs))
		}
		action := "replace"
		if name == "Vary" {
			action = "append"
		}
		for _, v := range vs {
			out = append(out, name+": "+v+" ("+action+")")
		}
	}
	slices.Sort(out)
	return out
}

// TestHTTPAgreesWithCheck asks the HTTP listener, described both as NGINX
// and as Envoy's http_service describe a request, what Check answers on
// the same table of requests: the decision and headers must be the same.
func TestHTTPAgreesWithCheck(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{HTTPAddr: "127.0.0.1:0"})
	addr := ts.Srv.HTTPAddr().String()
	for _, tt := range sameDecisionCases {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			fromC := fromCheck(ts.Authz().Check(th.CtxTimeout(t), th.AsCheckRequest(tt.req)))
			slices.Sort(fromC.headers)
			for _, nginxStyle := range []bool{true, false} {
				resp, body := th.HTTPCheck(t, addr, tt.req, nginxStyle)
				fromH := fromHTTP(t, resp, body)
				if fromC.code != fromH.code || fromC.action != fromH.action || fromC.status != fromH.status ||
					strings.Join(fromC.headers, "\n") != strings.Join(fromH.headers, "\n") {
					t.Errorf("nginx style %t:\nCheck: %+v\nHTTP:  %+v", nginxStyle, fromC, fromH)
				}
			}
		})
	}
}

// TestHTTPMetricsAndLogs checks that the HTTP listener's requests are
// counted with front_end="http", beside the ext_authz ones, and that its
// refusals are logged without the values sent.

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
// req (throughEnvoy), and Check's error.
func envoyAnswer(t *testing.T, authz authv3.AuthorizationClient, req *corsauthzv1.DecideRequest, upstream http.Handler) (httpAnswer, error) {
	rec, err := throughEnvoy(t, authz, th.AsCheckRequest(req), asHTTPRequest(req), upstream)
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
	m, err := middleware.New(th.CtxTimeout(ms.t), middleware.Options{Address: ms.addr, Mode: mode, Policy: policyName})
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
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	ms := &middlewares{t: t, addr: ts.Srv.GRPCAddr().String(), byID: map[string]*middleware.Middleware{}}
	for _, tt := range sameDecisionCases {
		t.Run(tt.desc, func(t *testing.T) { assertMiddlewareAgrees(t, ts, ms, tt.req) })
	}
}

// assertMiddlewareAgrees checks the middleware's answers to req, in both
// modes, against Envoy's.
func assertMiddlewareAgrees(t *testing.T, ts *th.Server, ms *middlewares, req *corsauthzv1.DecideRequest) {
	t.Helper()
	want, checkErr := envoyAnswer(t, ts.Authz(), req, upstreamWithCORS)
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
	ts := th.StartServer(f, policy.NewHolder(th.LoadEngine(f, th.Config)), server.Options{})
	ms := &middlewares{t: f, addr: ts.Srv.GRPCAddr().String(), byID: map[string]*middleware.Middleware{}}
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
