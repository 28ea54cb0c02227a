package agreement_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/extauthz"
	"github.com/corsauthz/corsauthz/internal/envoyheaders"
	th "github.com/corsauthz/corsauthz/internal/testharness"
	"github.com/corsauthz/corsauthz/middleware"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// The authorizer agreement table: every row is a request and an
// authorizer's behaviour, and what the browser and the upstream must see.
// Every row runs through every front end (ext_authz Check on the fast and
// the typed path, the HTTP listener as Envoy's http_service uses it, the
// middleware in local and remote mode), each behind a gateway that does
// exactly what its protocol says. A rule of the decision core that one
// front end breaks fails here, on that front end.

// behaviourHeader tells the test authorizers how to answer: the HTTP one
// is sent it (it is in its headers list), the gRPC one finds it in the
// CheckRequest.
const behaviourHeader = "X-Behaviour"

// authorizerTable is the configuration: "app" and "partners" share a match
// and so must share an authorizer; "shadow" is report-only.
const authorizerTable = `
authorizers:
  - name: sso
    http:
      url: %[1]s/auth
      headers: [cookie, authorization, x-behaviour]
      upstream_headers: [x-auth-request-user]
      timeout: 300ms
  - name: climb
    http:
      url: %[1]s/check
      forward_path: true
      headers: [x-behaviour]
      timeout: 300ms
  - name: rpc
    grpc: {address: "%[2]s", timeout: 300ms}
policies:
  - name: app
    authorizer: sso
    match: {hosts: [api.example.com]}
    allowed_origins: [https://app.example.com]
    allowed_methods: [GET, POST, DELETE]
    allow_credentials: true
  - name: partners
    authorizer: sso
    match: {hosts: [api.example.com]}
    allowed_origins: [https://partner.example.net]
  - name: shadow
    authorizer: sso
    report_only: true
    match: {hosts: [shadow.example.com]}
    allowed_origins: [https://app.example.com]
  - name: rpc
    authorizer: rpc
    match: {hosts: [rpc.example.com]}
    allowed_origins: [https://app.example.com]
    allow_credentials: true
  - name: climb
    authorizer: climb
    match: {hosts: [climb.example.com]}
    allowed_origins: [https://app.example.com]
  - name: plain
    match: {hosts: [plain.example.com]}
    allowed_origins: [https://app.example.com]
`

// authCase is one row.
type authCase struct {
	desc      string
	method    string
	host      string
	path      string
	headers   map[string]string // the browser's (or curl's) request headers
	behaviour string            // how the authorizer answers

	want authWant
}

// authWant is what the gateway's client and its upstream see.
type authWant struct {
	status int
	// cors are the Access-Control-* and Vary headers of the answer, as
	// "Name: value" lines, sorted.
	cors []string
	// body, when set, is the answer's body.
	body string
	// upstream: the request reached the upstream; user is the
	// X-Auth-Request-User (or X-User) it saw.
	upstream bool
	user     string
	// asked is how many times the authorizer was asked.
	asked int
	// authPath, when set, is the path the HTTP authorizer was asked on.
	authPath string
	// noHeaders are header names the answer must not carry.
	noHeaders []string
}

const (
	appOrigin     = "https://app.example.com"
	partnerOrigin = "https://partner.example.net"
)

var (
	corsApp = []string{
		"Access-Control-Allow-Credentials: true",
		"Access-Control-Allow-Origin: https://app.example.com",
		"Vary: Origin",
	}
	corsPartner = []string{"Access-Control-Allow-Origin: https://partner.example.net", "Vary: Origin"}
	corsNone    = []string{"Vary: Origin"}
)

var authCases = []authCase{
	{
		desc:   "allowed: upstream sees the authorizer's user, the page reads the answer",
		method: "GET", host: "api.example.com", path: "/v1/orders", headers: map[string]string{"Origin": appOrigin}, behaviour: "allow",
		want: authWant{status: 200, cors: corsApp, upstream: true, user: "alice", asked: 1},
	},
	{
		desc:   "denied: the 401 with its body, readable by the page",
		method: "DELETE", host: "api.example.com", path: "/v1/orders/1", headers: map[string]string{"Origin": appOrigin}, behaviour: "deny",
		want: authWant{status: 401, cors: corsApp, body: `{"login":"/start"}`, asked: 1},
	},
	{
		desc:   "a preflight never reaches the authorizer",
		method: "OPTIONS", host: "api.example.com", path: "/v1/orders/1",
		headers:   map[string]string{"Origin": appOrigin, "Access-Control-Request-Method": "DELETE"},
		behaviour: "deny",
		want: authWant{status: 204, cors: []string{
			"Access-Control-Allow-Credentials: true",
			"Access-Control-Allow-Methods: DELETE",
			"Access-Control-Allow-Origin: https://app.example.com",
			"Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
		}},
	},
	{
		desc:   "the Origin picks CORS headers, never authorization: a partner's origin is still asked (finding 1)",
		method: "POST", host: "api.example.com", path: "/v1/admin/delete", headers: map[string]string{"Origin": partnerOrigin}, behaviour: "deny",
		want: authWant{status: 401, cors: corsPartner, body: `{"login":"/start"}`, asked: 1},
	},
	{
		desc:   "any Origin is asked, an unknown one too",
		method: "POST", host: "api.example.com", path: "/v1/admin/delete", headers: map[string]string{"Origin": "https://evil.example"}, behaviour: "deny",
		want: authWant{status: 401, cors: corsNone, body: `{"login":"/start"}`, asked: 1},
	},
	{
		desc:   "a client's own X-Auth-Request-User never reaches the upstream",
		method: "GET", host: "api.example.com", path: "/v1/orders",
		headers:   map[string]string{"Origin": appOrigin, "X-Auth-Request-User": "admin"},
		behaviour: "allow-nouser",
		want:      authWant{status: 200, cors: corsApp, upstream: true, user: "", asked: 1},
	},
	{
		desc:   "report_only: a preflight goes upstream, so the authorizer is asked (finding 2)",
		method: "OPTIONS", host: "shadow.example.com", path: "/admin",
		headers:   map[string]string{"Origin": appOrigin, "Access-Control-Request-Method": "DELETE"},
		behaviour: "deny",
		want:      authWant{status: 401, body: `{"login":"/start"}`, cors: nil, asked: 1},
	},
	{
		desc:   "only corsauthz speaks CORS: an allow's Access-Control-* are dropped (finding 4)",
		method: "GET", host: "api.example.com", path: "/v1/orders", headers: map[string]string{"Origin": "https://evil.example"}, behaviour: "allow-inject",
		want: authWant{status: 200, cors: corsNone, upstream: true, user: "alice", asked: 1},
	},
	{
		desc:   "only corsauthz speaks CORS: a denial's Access-Control-* are dropped",
		method: "GET", host: "api.example.com", path: "/v1/orders", headers: map[string]string{"Origin": "https://evil.example"}, behaviour: "deny-inject",
		want: authWant{status: 401, cors: corsNone, body: `{"login":"/start"}`, asked: 1},
	},
	{
		desc:   "gRPC: an allow's Access-Control-* in response and request headers are dropped (finding 4)",
		method: "GET", host: "rpc.example.com", path: "/", headers: map[string]string{"Origin": "https://evil.example"}, behaviour: "allow-inject",
		want: authWant{status: 200, cors: corsNone, upstream: true, user: "alice", asked: 1},
	},
	{
		desc:   "gRPC: an allow's request headers apply with Envoy's actions (add if absent, overwrite if present)",
		method: "GET", host: "rpc.example.com", path: "/", headers: map[string]string{"Origin": appOrigin}, behaviour: "allow-actions",
		want: authWant{status: 200, cors: corsApp, upstream: true, user: "alice", asked: 1},
	},
	{
		desc:   "gRPC: a denial with status 200 stays a denial, as 403 (finding 5)",
		method: "POST", host: "rpc.example.com", path: "/admin", headers: map[string]string{"Origin": appOrigin}, behaviour: "deny-200",
		want: authWant{status: 403, cors: corsApp, asked: 1},
	},
	{
		desc:   "gRPC: a denial with status 302 stays a denial, as 403",
		method: "POST", host: "rpc.example.com", path: "/admin", headers: map[string]string{"Origin": appOrigin}, behaviour: "deny-302",
		want: authWant{status: 403, cors: corsApp, asked: 1},
	},
	{
		desc:   "gRPC: a denial's framing and gateway control headers are dropped (finding 5)",
		method: "POST", host: "rpc.example.com", path: "/admin", headers: map[string]string{"Origin": appOrigin}, behaviour: "deny-framing",
		want: authWant{status: 401, cors: corsApp, body: "no", asked: 1, noHeaders: []string{"X-Accel-Redirect", "Transfer-Encoding", "Connection", "Keep-Alive"}},
	},
	{
		desc:   "X-Accel-Redirect in a denial is dropped (finding 5, NGINX)",
		method: "POST", host: "api.example.com", path: "/v1/admin/delete", headers: map[string]string{"Origin": appOrigin}, behaviour: "deny-accel",
		want: authWant{status: 401, cors: corsApp, body: `{"login":"/start"}`, asked: 1, noHeaders: []string{"X-Accel-Redirect"}},
	},
	{
		desc:   "an HTTP authorizer answering 101 has failed: 503 with CORS headers",
		method: "GET", host: "api.example.com", path: "/v1/orders", headers: map[string]string{"Origin": appOrigin}, behaviour: "switch",
		want: authWant{status: 503, cors: corsApp, asked: 1},
	},
	{
		desc:   "an authorizer that hangs has failed within its timeout: 503 with CORS headers",
		method: "GET", host: "api.example.com", path: "/v1/orders", headers: map[string]string{"Origin": appOrigin}, behaviour: "hang",
		want: authWant{status: 503, cors: corsApp, asked: 1},
	},
	{
		desc:   "an authorizer answering garbage has failed: 503",
		method: "GET", host: "api.example.com", path: "/v1/orders", headers: map[string]string{"Origin": appOrigin}, behaviour: "garbage",
		want: authWant{status: 503, cors: corsApp, asked: 1},
	},
	{
		desc:   "gRPC: an authorizer error has failed: 503",
		method: "GET", host: "rpc.example.com", path: "/", headers: map[string]string{"Origin": appOrigin}, behaviour: "error",
		want: authWant{status: 503, cors: corsApp, asked: 1},
	},
	{
		desc:   "forward_path: dot segments are removed before the path is appended",
		method: "GET", host: "climb.example.com", path: "/v1/%2e%2e/../admin?x=1", headers: map[string]string{"Origin": appOrigin}, behaviour: "allow",
		want: authWant{status: 200, cors: []string{"Access-Control-Allow-Origin: https://app.example.com", "Vary: Origin"}, upstream: true, asked: 1, authPath: "/check/admin"},
	},
	{
		desc:   "forward_path: an encoded slash is refused with 400 before any authorizer is asked",
		method: "GET", host: "climb.example.com", path: "/v1/..%2fadmin", headers: map[string]string{"Origin": appOrigin}, behaviour: "allow",
		want: authWant{status: 400, cors: []string{"Access-Control-Allow-Origin: https://app.example.com", "Vary: Origin"}, asked: 0},
	},
	{
		desc:   "no authorizer: the request goes on",
		method: "DELETE", host: "plain.example.com", path: "/", headers: map[string]string{"Origin": appOrigin}, behaviour: "deny",
		want: authWant{status: 200, cors: []string{"Access-Control-Allow-Origin: https://app.example.com", "Vary: Origin"}, upstream: true},
	},
}

// authorizers are the test authorizers: HTTP and gRPC, answering as each
// request's X-Behaviour says, counting what they are asked by row id.
type authorizers struct {
	httpURL, grpcAddr string
	mu                sync.Mutex
	asked             map[string]int    // by X-Row
	paths             map[string]string // by X-Row: the HTTP path asked
}

func startAuthorizers(t *testing.T) *authorizers {
	t.Helper()
	a := &authorizers{asked: map[string]int{}, paths: map[string]string{}}
	hs := httptest.NewServer(http.HandlerFunc(a.serveHTTP))
	t.Cleanup(hs.Close)
	a.httpURL = hs.URL
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, &grpcAuthorizer{a: a})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	a.grpcAddr = lis.Addr().String()
	return a
}

func (a *authorizers) count(row, path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked[row]++
	a.paths[row] = path
}

func (a *authorizers) askedFor(row string) (int, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.asked[row], a.paths[row]
}

// rowHeader carries the row and front end id; the HTTP authorizer is sent
// only the headers it lists, so the id rides in X-Behaviour too.
func (a *authorizers) serveHTTP(w http.ResponseWriter, r *http.Request) {
	behaviour, row, _ := strings.Cut(r.Header.Get(behaviourHeader), ";")
	a.count(row, r.URL.Path)
	h := w.Header()
	deny := func() {
		h.Set("Content-Type", "application/json")
		h.Set("WWW-Authenticate", "Bearer")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"login":"/start"}`)
	}
	switch behaviour {
	case "allow":
		h.Set("X-Auth-Request-User", "alice")
		w.WriteHeader(http.StatusAccepted)
	case "allow-nouser":
		w.WriteHeader(http.StatusOK)
	case "allow-inject":
		h.Set("X-Auth-Request-User", "alice")
		h.Set("Access-Control-Allow-Origin", "https://evil.example")
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("Access-Control-Expose-Headers", "*")
		w.WriteHeader(http.StatusOK)
	case "deny-inject":
		h.Set("Access-Control-Allow-Origin", "https://evil.example")
		h.Set("Access-Control-Allow-Credentials", "true")
		deny()
	case "deny-accel":
		h.Set("X-Accel-Redirect", "/public/granted")
		deny()
	case "switch", "garbage":
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		if behaviour == "switch" {
			buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
		} else {
			buf.WriteString("NOT HTTP AT ALL\r\n\r\n")
		}
		buf.Flush()
		time.Sleep(time.Second) // past every timeout: the connection stays up
	case "hang":
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
		w.WriteHeader(http.StatusOK)
	default:
		deny()
	}
}

type grpcAuthorizer struct{ a *authorizers }

func (g *grpcAuthorizer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := req.GetAttributes().GetRequest().GetHttp()
	behaviour, row, _ := strings.Cut(h.GetHeaders()[strings.ToLower(behaviourHeader)], ";")
	g.a.count(row, h.GetPath())
	set := th.Set
	denied := func(code typev3.StatusCode, headers []*corev3.HeaderValueOption, body string) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status: &typev3.HttpStatus{Code: code}, Headers: headers, Body: body,
			}},
		}
	}
	switch behaviour {
	case "allow", "allow-inject":
		ok := &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{set("x-user", "alice")}}
		if behaviour == "allow-inject" {
			ok.Headers = append(ok.Headers, set("access-control-allow-origin", "https://evil.example"))
			ok.ResponseHeadersToAdd = []*corev3.HeaderValueOption{
				set("access-control-allow-origin", "https://evil.example"),
				set("access-control-allow-credentials", "true"),
				set("access-control-expose-headers", "*"),
			}
		}
		return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}, nil
	case "allow-actions":
		// Envoy's actions: only absent headers are added, only present ones
		// overwritten.
		action := func(name, value string, a corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
			return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: name, Value: value}, AppendAction: a}
		}
		ok := &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
			action("x-user", "alice", corev3.HeaderValueOption_ADD_IF_ABSENT),
			action("x-auth-request-user", "mallory", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
		}}
		return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}, nil
	case "deny-200":
		return denied(typev3.StatusCode_OK, nil, ""), nil
	case "deny-302":
		return denied(typev3.StatusCode_Found, []*corev3.HeaderValueOption{set("location", "https://evil.example/")}, ""), nil
	case "deny-framing":
		return denied(typev3.StatusCode_Unauthorized, []*corev3.HeaderValueOption{
			set("content-length", "999"), set("transfer-encoding", "chunked"), set("connection", "close"),
			set("keep-alive", "timeout=5"), set("x-accel-redirect", "/public/granted"),
		}, "no"), nil
	case "error":
		return nil, status.Error(codes.Internal, "the policy engine is down")
	}
	return denied(typev3.StatusCode_Unauthorized, []*corev3.HeaderValueOption{set("content-type", "application/json")}, `{"login":"/start"}`), nil
}

// authUpstream records what reached it, by row id.
type authUpstream struct {
	mu   sync.Mutex
	seen map[string]http.Header
}

func (u *authUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, row, _ := strings.Cut(r.Header.Get(behaviourHeader), ";")
	u.mu.Lock()
	u.seen[row] = r.Header.Clone()
	u.mu.Unlock()
	w.Header().Set("Access-Control-Allow-Origin", "https://upstream.example") // never reaches the browser
	w.Header().Set("Vary", "Accept-Encoding")
	fmt.Fprint(w, "upstream")
}

func (u *authUpstream) sawFor(row string) (http.Header, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	h, ok := u.seen[row]
	return h, ok
}

// frontEnd sends one row's request through one gateway and returns what
// the browser gets.
type frontEnd struct {
	name string
	send func(t *testing.T, r *http.Request, upstream http.Handler) *http.Response
}

func TestAuthorizersAgree(t *testing.T) {
	auths := startAuthorizers(t)
	holder := policy.NewHolder(th.LoadEngine(t, fmt.Sprintf(authorizerTable, auths.httpURL, auths.grpcAddr)))
	ts := th.StartServer(t, holder, server.Options{HTTPAddr: "127.0.0.1:0"})
	typed := startTyped(t, holder)
	httpAddr := ts.Srv.HTTPAddr().String()
	mws := map[middleware.Mode]*middleware.Middleware{}
	for _, mode := range []middleware.Mode{middleware.ModeLocal, middleware.ModeRemote} {
		m, err := middleware.New(th.CtxTimeout(t), middleware.Options{Address: ts.Srv.GRPCAddr().String(), Mode: mode, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		mws[mode] = m
	}
	frontEnds := []frontEnd{
		{"ext_authz fast path", func(t *testing.T, r *http.Request, up http.Handler) *http.Response {
			rec, _ := throughEnvoy(t, ts.Authz(), checkRequestOf(r), r, up)
			return rec.Result()
		}},
		{"ext_authz typed path", func(t *testing.T, r *http.Request, up http.Handler) *http.Response {
			rec, _ := throughEnvoy(t, authv3.NewAuthorizationClient(typed), checkRequestOf(r), r, up)
			return rec.Result()
		}},
		{"HTTP listener", func(t *testing.T, r *http.Request, up http.Handler) *http.Response {
			return throughHTTPService(t, httpAddr, r, up)
		}},
		{"middleware local", func(t *testing.T, r *http.Request, up http.Handler) *http.Response {
			rec := httptest.NewRecorder()
			mws[middleware.ModeLocal].Wrap(up).ServeHTTP(rec, r)
			return rec.Result()
		}},
		{"middleware remote", func(t *testing.T, r *http.Request, up http.Handler) *http.Response {
			rec := httptest.NewRecorder()
			mws[middleware.ModeRemote].Wrap(up).ServeHTTP(rec, r)
			return rec.Result()
		}},
	}
	for i, tc := range authCases {
		for j, fe := range frontEnds {
			t.Run(tc.desc+"/"+fe.name, func(t *testing.T) {
				row := fmt.Sprintf("%d.%d", i, j)
				up := &authUpstream{seen: map[string]http.Header{}}
				r := httptest.NewRequest(tc.method, "http://"+tc.host+tc.path, nil)
				r.RequestURI = tc.path
				for name, v := range tc.headers {
					r.Header.Set(name, v)
				}
				r.Header.Set(behaviourHeader, tc.behaviour+";"+row)
				resp := fe.send(t, r, up)
				checkAuthAnswer(t, resp, tc.want)
				seen, reached := up.sawFor(row)
				if reached != tc.want.upstream {
					t.Errorf("upstream reached: %t, want %t", reached, tc.want.upstream)
				}
				if reached {
					user := seen.Get("X-Auth-Request-User") + seen.Get("X-User")
					if user != tc.want.user {
						t.Errorf("upstream saw user %q, want %q", user, tc.want.user)
					}
					for name := range seen {
						if strings.HasPrefix(name, "Access-Control-") {
							t.Errorf("upstream saw request header %s from the authorizer", name)
						}
					}
				}
				asked, path := auths.askedFor(row)
				if asked != tc.want.asked {
					t.Errorf("authorizer asked %d times, want %d", asked, tc.want.asked)
				}
				if tc.want.authPath != "" && path != tc.want.authPath {
					t.Errorf("authorizer asked on %q, want %q", path, tc.want.authPath)
				}
			})
		}
	}
}

func checkAuthAnswer(t *testing.T, resp *http.Response, want authWant) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want.status {
		t.Errorf("status %d (%q), want %d", resp.StatusCode, body, want.status)
	}
	var cors []string
	for name, vs := range resp.Header {
		if strings.HasPrefix(name, "Access-Control-") || name == "Vary" {
			for _, v := range vs {
				if name == "Vary" {
					v = strings.TrimPrefix(strings.TrimPrefix(v, "Accept-Encoding, "), "Accept-Encoding")
					if v == "" {
						continue
					}
				}
				cors = append(cors, name+": "+v)
			}
		}
	}
	slices.Sort(cors)
	if !slices.Equal(cors, want.cors) {
		t.Errorf("CORS headers:\n%s\nwant:\n%s", strings.Join(cors, "\n"), strings.Join(want.cors, "\n"))
	}
	if want.body != "" && string(body) != want.body {
		t.Errorf("body %q, want %q", body, want.body)
	}
	for _, name := range want.noHeaders {
		if v, ok := resp.Header[http.CanonicalHeaderKey(name)]; ok {
			t.Errorf("the answer carries %s: %q", name, v)
		}
	}
}

// startTyped serves Check the standard way (generated registration,
// standard codec) with its own core, and returns a connection to it.
func startTyped(t *testing.T, holder *policy.Holder) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, extauthz.New(th.NewCore(t, holder, nil)))
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// throughEnvoy does what Envoy's ext_authz filter does with the answer to
// check, which describes r (Envoy 1.31 and later,
// source/extensions/filters/http/ext_authz): an error is status_on_error
// (503 in the shipped configuration); a denial is answered with its status
// (403 when none), headers and body; an allow sets and removes the request
// headers of ok_response, and the route (response_headers_to_remove in the
// shipped configuration) drops the upstream's Access-Control-* before
// response_headers_to_add apply.
func throughEnvoy(t *testing.T, authz authv3.AuthorizationClient, check *authv3.CheckRequest, r *http.Request, upstream http.Handler) (*httptest.ResponseRecorder, error) {
	t.Helper()
	resp, err := authz.Check(th.CtxTimeout(t), check)
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
		ok := resp.GetOkResponse()
		up := r.Clone(r.Context())
		for _, name := range ok.GetHeadersToRemove() {
			up.Header.Del(name)
		}
		envoyheaders.Apply(up.Header, ok.GetHeaders())
		urec := httptest.NewRecorder()
		upstream.ServeHTTP(urec, up)
		for name, values := range urec.Result().Header {
			if !strings.HasPrefix(name, "Access-Control-") {
				rec.Header()[name] = values
			}
		}
		envoyheaders.Apply(rec.Header(), ok.GetResponseHeadersToAdd())
		rec.WriteHeader(urec.Code)
		rec.Body = urec.Body
	}
	return rec, err
}

// checkRequestOf is the CheckRequest Envoy sends for r: every header, lower
// case, repeated ones joined with ",".
func checkRequestOf(r *http.Request) *authv3.CheckRequest {
	headers := map[string]string{}
	for name, vs := range r.Header {
		headers[strings.ToLower(name)] = strings.Join(vs, ",")
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: r.Method, Host: r.Host, Path: r.RequestURI, Scheme: "https", Headers: headers,
		}},
	}}
}

// allowedUpstreamHeaders are the authorization answer's headers the
// gateway passes upstream (Envoy's allowed_upstream_headers, NGINX's
// auth_request_set), overwriting the client's.
var allowedUpstreamHeaders = []string{"X-Auth-Request-User", "X-User"}

// throughHTTPService does what Envoy's http_service (and the shipped NGINX
// configuration) do with the HTTP listener's answer: 200 lets the request
// go upstream with the allowed upstream headers taken from the answer (and
// those named in X-Envoy-Auth-Headers-To-Remove removed), and the answer's
// Access-Control-* replace the upstream's while its Vary is appended; any
// other status is answered as it is.
func throughHTTPService(t *testing.T, addr string, r *http.Request, upstream http.Handler) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	check, _ := http.NewRequest(r.Method, "http://"+addr+"/", nil)
	check.URL.Opaque = r.RequestURI
	check.Host = r.Host
	check.Header = r.Header.Clone()
	check.Header.Set("X-Forwarded-Proto", "https")
	if err := check.Write(conn); err != nil {
		t.Fatal(err)
	}
	answer, err := http.ReadResponse(bufio.NewReader(conn), check)
	if err != nil {
		t.Fatalf("read the listener's answer: %v", err)
	}
	if answer.StatusCode != http.StatusOK {
		return answer
	}
	defer answer.Body.Close()
	up := r.Clone(r.Context())
	for _, name := range allowedUpstreamHeaders {
		up.Header.Del(name)
		if v := answer.Header.Get(name); v != "" {
			up.Header.Set(name, v)
		}
	}
	for name := range strings.SplitSeq(answer.Header.Get("X-Envoy-Auth-Headers-To-Remove"), ",") {
		if name = strings.TrimSpace(name); name != "" {
			up.Header.Del(name)
		}
	}
	urec := httptest.NewRecorder()
	upstream.ServeHTTP(urec, up)
	rec := httptest.NewRecorder()
	for name, values := range urec.Result().Header {
		if !strings.HasPrefix(name, "Access-Control-") {
			rec.Header()[name] = values
		}
	}
	for name, values := range answer.Header {
		switch {
		case strings.HasPrefix(name, "Access-Control-"):
			rec.Header()[name] = values
		case name == "Vary":
			rec.Header()[name] = append(rec.Header()[name], values...)
		}
	}
	rec.WriteHeader(urec.Code)
	rec.Body = urec.Body
	return rec.Result()
}
