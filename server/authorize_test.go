package server_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

// authorizerConfig puts an HTTP authorizer (at %s) behind "web" and a
// gRPC one (at %s) behind "rpc".
const authorizerConfig = `
authorizers:
  - name: forward
    http:
      url: %s/oauth2/auth
      headers: [cookie]
      upstream_headers: [x-auth-request-user, x-auth-request-email]
      timeout: 2s
  - name: ext
    grpc:
      address: %s
      timeout: 2s
policies:
  - name: web
    authorizer: forward
    match: {hosts: [web.example.com]}
    allowed_origins: [https://app.example.com]
    allowed_methods: [PUT]
    allow_credentials: true
    reject_disallowed_origins: true
  - name: rpc
    authorizer: ext
    match: {hosts: [rpc.example.com]}
    allowed_origins: [https://app.example.com]
  - name: plain
    match: {hosts: [plain.example.com]}
    allowed_origins: [https://app.example.com]
`

// testAuthorizers are an HTTP authorizer that allows a request with the
// cookie session=ok, and a gRPC one that allows a request with the header
// x-token: ok; both count what they are asked.
type testAuthorizers struct {
	httpURL, grpcAddr string
	httpAsked         atomic.Int64
	httpMu            sync.Mutex
	httpLast          http.Header // the headers of the last HTTP check
	grpcMu            sync.Mutex
	grpcGot           []*authv3.CheckRequest
}

func startTestAuthorizers(t *testing.T) *testAuthorizers {
	t.Helper()
	ta := &testAuthorizers{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ta.httpAsked.Add(1)
		ta.httpMu.Lock()
		ta.httpLast = r.Header.Clone()
		ta.httpMu.Unlock()
		if r.Header.Get("Cookie") != "session=ok" {
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"login":"/oauth2/start"}`)
			return
		}
		w.Header().Set("X-Auth-Request-User", "alice")
		w.WriteHeader(http.StatusAccepted)
	})}
	go hs.Serve(lis)
	t.Cleanup(func() { hs.Close() })
	ta.httpURL = "http://" + lis.Addr().String()

	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, ta)
	go gs.Serve(glis)
	t.Cleanup(gs.Stop)
	ta.grpcAddr = glis.Addr().String()
	return ta
}

func (ta *testAuthorizers) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	ta.grpcMu.Lock()
	ta.grpcGot = append(ta.grpcGot, req)
	ta.grpcMu.Unlock()
	if req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-token"] != "ok" {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{set("www-authenticate", "Bearer")},
				Body:    "token required",
			}},
		}, nil
	}
	meta, _ := structpb.NewStruct(map[string]any{"sub": "alice"})
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{set("x-user", "alice")},
			HeadersToRemove:      []string{"x-token"},
			QueryParametersToSet: []*corev3.QueryParameter{{Key: "sub", Value: "alice"}},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{set("access-control-allow-origin", "*"), set("x-checked", "yes")},
		}},
		DynamicMetadata: meta,
	}, nil
}

func (ta *testAuthorizers) grpcRequests() []*authv3.CheckRequest {
	ta.grpcMu.Lock()
	defer ta.grpcMu.Unlock()
	return append([]*authv3.CheckRequest(nil), ta.grpcGot...)
}

var _ authv3.AuthorizationServer = (*testAuthorizers)(nil)

// TestCheckAsksAuthorizers runs each case through the server's fast path
// and through Authz served the standard way: same answers, both merged
// as contract §8 says.
func TestCheckAsksAuthorizers(t *testing.T) {
	ta := startTestAuthorizers(t)
	e := loadEngine(t, fmt.Sprintf(authorizerConfig, ta.httpURL, ta.grpcAddr))
	holder := policy.NewHolder(e)
	fast := startServer(t, holder, server.Options{})
	standardAuthz := server.NewAuthz(holder, nil, nil)
	t.Cleanup(standardAuthz.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, standardAuthz)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	standard := startClient(t, lis.Addr().String())

	cors := []*corev3.HeaderValueOption{
		set("Access-Control-Allow-Origin", "https://app.example.com"),
		set("Access-Control-Allow-Credentials", "true"),
		appendTo("Vary", "Origin"),
	}
	meta, _ := structpb.NewStruct(map[string]any{"sub": "alice"})
	origin := "https://app.example.com"
	tests := []struct {
		desc      string
		req       *authv3.CheckRequest
		want      *authv3.CheckResponse
		httpAsked int64 // how many times the HTTP authorizer is asked
	}{
		{
			desc:      "HTTP authorizer allows: upstream_headers set, the absent one removed, CORS on the response",
			req:       checkRequest("GET", "web.example.com", "/v1/x", hdrs{"origin": origin, "cookie": "session=ok", "x-auth-request-email": "forged@example.com"}, ""),
			want:      withRequestHeaders(okResponse(cors...), []*corev3.HeaderValueOption{set("x-auth-request-user", "alice")}, "x-auth-request-email"),
			httpAsked: 1,
		},
		{
			desc: "HTTP authorizer denies: its 401, headers and body with the CORS headers (corsauthz's Allow-Origin wins)",
			req:  checkRequest("GET", "web.example.com", "/v1/x", hdrs{"origin": origin}, ""),
			want: withBody(deniedResponse(401,
				set("Content-Type", "application/json"),
				set("Access-Control-Allow-Origin", "https://app.example.com"),
				set("Access-Control-Allow-Credentials", "true"),
				appendTo("Vary", "Origin")), `{"login":"/oauth2/start"}`),
			httpAsked: 1,
		},
		{
			desc: "a preflight never reaches the authorizer",
			req:  checkRequest("OPTIONS", "web.example.com", "/v1/x", hdrs{"origin": origin, "access-control-request-method": "PUT"}, ""),
			want: deniedResponse(204,
				set("Access-Control-Allow-Origin", "https://app.example.com"),
				set("Access-Control-Allow-Methods", "PUT"),
				set("Access-Control-Allow-Credentials", "true"),
				appendTo("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")),
		},
		{
			desc: "a reject_disallowed_origins refusal never reaches the authorizer",
			req:  checkRequest("GET", "web.example.com", "/v1/x", hdrs{"origin": "https://evil.example", "cookie": "session=ok"}, ""),
			want: deniedResponse(403, appendTo("Vary", "Origin")),
		},
		{
			desc: "gRPC authorizer allows: its whole ok_response and metadata, corsauthz's Allow-Origin wins",
			req:  checkRequest("POST", "rpc.example.com", "/v1/x", hdrs{"origin": origin, "x-token": "ok"}, ""),
			want: &authv3.CheckResponse{
				Status: &rpcstatus.Status{},
				HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
					Headers:              []*corev3.HeaderValueOption{set("x-user", "alice")},
					HeadersToRemove:      []string{"x-token"},
					QueryParametersToSet: []*corev3.QueryParameter{{Key: "sub", Value: "alice"}},
					ResponseHeadersToAdd: []*corev3.HeaderValueOption{set("x-checked", "yes"),
						set("Access-Control-Allow-Origin", "https://app.example.com"), appendTo("Vary", "Origin")},
				}},
				DynamicMetadata: meta,
			},
		},
		{
			desc: "gRPC authorizer denies with a body",
			req:  checkRequest("POST", "rpc.example.com", "/v1/x", hdrs{"origin": origin}, ""),
			want: withBody(deniedResponse(401, set("www-authenticate", "Bearer"),
				set("Access-Control-Allow-Origin", "https://app.example.com"), appendTo("Vary", "Origin")), "token required"),
		},
		{
			desc: "a policy without an authorizer answers as before",
			req:  checkRequest("GET", "plain.example.com", "/v1/x", hdrs{"origin": origin}, ""),
			want: okResponse(set("Access-Control-Allow-Origin", "https://app.example.com"), appendTo("Vary", "Origin")),
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			for _, path := range []struct {
				name string
				conn *grpc.ClientConn
			}{{"fast path", fast.conn}, {"standard", standard}} {
				before := ta.httpAsked.Load()
				grpcBefore := len(ta.grpcRequests())
				got, err := authv3.NewAuthorizationClient(path.conn).Check(ctxTimeout(t), tc.req)
				if err != nil {
					t.Fatalf("%s: Check: %v", path.name, err)
				}
				assertProtoEqual(t, got, tc.want)
				if n := ta.httpAsked.Load() - before; n != tc.httpAsked {
					t.Errorf("%s: HTTP authorizer asked %d times, want %d", path.name, n, tc.httpAsked)
				}
				if rs := ta.grpcRequests(); len(rs) > grpcBefore && !proto.Equal(rs[len(rs)-1], tc.req) {
					t.Errorf("%s: the gRPC authorizer got another CheckRequest than corsauthz:\n%v\nwant\n%v", path.name, rs[len(rs)-1], tc.req)
				}
			}
		})
	}
}

func withRequestHeaders(resp *authv3.CheckResponse, set []*corev3.HeaderValueOption, remove ...string) *authv3.CheckResponse {
	ok := resp.GetOkResponse()
	ok.Headers, ok.HeadersToRemove = set, remove
	return resp
}

func withBody(resp *authv3.CheckResponse, body string) *authv3.CheckResponse {
	resp.GetDeniedResponse().Body = body
	return resp
}

func startClient(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecureCreds()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestExplainNamesAuthorizer: Decide says which authorizer would be asked.
func TestDecideNamesAuthorizer(t *testing.T) {
	ta := startTestAuthorizers(t)
	ts := startServer(t, policy.NewHolder(loadEngine(t, fmt.Sprintf(authorizerConfig, ta.httpURL, ta.grpcAddr))), server.Options{})
	for _, tc := range []struct {
		method, host, acrm, want string
	}{
		{"GET", "web.example.com", "", "forward"},
		{"OPTIONS", "web.example.com", "PUT", ""},
		{"GET", "rpc.example.com", "", "ext"},
		{"GET", "plain.example.com", "", ""},
	} {
		resp, err := decisionClient(ts).Decide(ctxTimeout(t), decideRequest(tc.method, tc.host, tc.acrm))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAuthorizer() != tc.want {
			t.Errorf("%s %s: authorizer %q, want %q", tc.method, tc.host, resp.GetAuthorizer(), tc.want)
		}
	}
	if n := ta.httpAsked.Load(); n != 0 {
		t.Errorf("Decide asked the authorizer %d times: it must never ask", n)
	}
	list, err := decisionClient(ts).ListPolicies(ctxTimeout(t), &corsauthzv1.ListPoliciesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range list.GetPolicies() {
		got[p.GetName()] = p.GetAuthorizer()
	}
	if want := map[string]string{"web": "forward", "rpc": "ext", "plain": ""}; !maps.Equal(got, want) {
		t.Errorf("ListPolicies authorizers %v, want %v", got, want)
	}
}

func decisionClient(ts *testServer) corsauthzv1.DecisionServiceClient {
	return corsauthzv1.NewDecisionServiceClient(ts.conn)
}

func decideRequest(method, host, acrm string) *corsauthzv1.DecideRequest {
	return &corsauthzv1.DecideRequest{Method: method, Host: host, Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: acrm}
}
