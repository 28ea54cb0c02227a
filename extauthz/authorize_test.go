package extauthz_test

import (
	"fmt"
	"maps"
	"net"
	"testing"

	"github.com/corsauthz/corsauthz/extauthz"
	th "github.com/corsauthz/corsauthz/internal/testharness"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

// TestCheckAsksAuthorizers runs each case through the server's fast path
// and through Authz served the standard way: same answers, both merged
// as docs/authorizers.md says.
func TestCheckAsksAuthorizers(t *testing.T) {
	ta := th.StartTestAuthorizers(t)
	e := th.LoadEngine(t, fmt.Sprintf(th.AuthorizerConfig, ta.HTTPURL, ta.GRPCAddr))
	holder := policy.NewHolder(e)
	fast := th.StartServer(t, holder, server.Options{})
	standardAuthz := extauthz.New(th.NewCore(t, holder, nil))
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
		th.Set("Access-Control-Allow-Origin", "https://app.example.com"),
		th.Set("Access-Control-Allow-Credentials", "true"),
		th.AppendTo("Vary", "Origin"),
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
			req:       th.CheckRequest("GET", "web.example.com", "/v1/x", th.Hdrs{"origin": origin, "cookie": "session=ok", "x-auth-request-email": "forged@example.com"}, ""),
			want:      withRequestHeaders(th.OKResponse(cors...), []*corev3.HeaderValueOption{th.Set("x-auth-request-user", "alice")}, "x-auth-request-email"),
			httpAsked: 1,
		},
		{
			desc: "HTTP authorizer denies: its 401, headers and body with the CORS headers (corsauthz's Allow-Origin wins)",
			req:  th.CheckRequest("GET", "web.example.com", "/v1/x", th.Hdrs{"origin": origin}, ""),
			want: withBody(th.DeniedResponse(401,
				th.Set("Content-Type", "application/json"),
				th.Set("Access-Control-Allow-Origin", "https://app.example.com"),
				th.Set("Access-Control-Allow-Credentials", "true"),
				th.AppendTo("Vary", "Origin")), `{"login":"/oauth2/start"}`),
			httpAsked: 1,
		},
		{
			desc: "a preflight never reaches the authorizer",
			req:  th.CheckRequest("OPTIONS", "web.example.com", "/v1/x", th.Hdrs{"origin": origin, "access-control-request-method": "PUT"}, ""),
			want: th.DeniedResponse(204,
				th.Set("Access-Control-Allow-Origin", "https://app.example.com"),
				th.Set("Access-Control-Allow-Methods", "PUT"),
				th.Set("Access-Control-Allow-Credentials", "true"),
				th.AppendTo("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")),
		},
		{
			desc: "a reject_disallowed_origins refusal never reaches the authorizer",
			req:  th.CheckRequest("GET", "web.example.com", "/v1/x", th.Hdrs{"origin": "https://evil.example", "cookie": "session=ok"}, ""),
			want: th.DeniedResponse(403, th.AppendTo("Vary", "Origin")),
		},
		{
			desc: "gRPC authorizer allows: its whole ok_response and metadata, corsauthz's Allow-Origin wins",
			req:  th.CheckRequest("POST", "rpc.example.com", "/v1/x", th.Hdrs{"origin": origin, "x-token": "ok"}, ""),
			want: &authv3.CheckResponse{
				Status: &rpcstatus.Status{},
				HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
					Headers:              []*corev3.HeaderValueOption{th.Set("x-user", "alice")},
					HeadersToRemove:      []string{"x-token"},
					QueryParametersToSet: []*corev3.QueryParameter{{Key: "sub", Value: "alice"}},
					ResponseHeadersToAdd: []*corev3.HeaderValueOption{th.Set("x-checked", "yes"),
						th.Set("Access-Control-Allow-Origin", "https://app.example.com"), th.AppendTo("Vary", "Origin")},
				}},
				DynamicMetadata: meta,
			},
		},
		{
			desc: "gRPC authorizer denies with a body",
			req:  th.CheckRequest("POST", "rpc.example.com", "/v1/x", th.Hdrs{"origin": origin}, ""),
			want: withBody(th.DeniedResponse(401, th.Set("www-authenticate", "Bearer"),
				th.Set("Access-Control-Allow-Origin", "https://app.example.com"), th.AppendTo("Vary", "Origin")), "token required"),
		},
		{
			desc: "a policy without an authorizer answers as before",
			req:  th.CheckRequest("GET", "plain.example.com", "/v1/x", th.Hdrs{"origin": origin}, ""),
			want: th.OKResponse(th.Set("Access-Control-Allow-Origin", "https://app.example.com"), th.AppendTo("Vary", "Origin")),
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			for _, path := range []struct {
				name string
				conn *grpc.ClientConn
			}{{"fast path", fast.Conn}, {"standard", standard}} {
				before := ta.HTTPAsked.Load()
				grpcBefore := len(ta.GRPCRequests())
				got, err := authv3.NewAuthorizationClient(path.conn).Check(th.CtxTimeout(t), tc.req)
				if err != nil {
					t.Fatalf("%s: Check: %v", path.name, err)
				}
				th.AssertProtoEqual(t, got, tc.want)
				if n := ta.HTTPAsked.Load() - before; n != tc.httpAsked {
					t.Errorf("%s: HTTP authorizer asked %d times, want %d", path.name, n, tc.httpAsked)
				}
				if rs := ta.GRPCRequests(); len(rs) > grpcBefore && !proto.Equal(rs[len(rs)-1], tc.req) {
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
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestExplainNamesAuthorizer: Decide says which authorizer would be asked.
func TestDecideNamesAuthorizer(t *testing.T) {
	ta := th.StartTestAuthorizers(t)
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, fmt.Sprintf(th.AuthorizerConfig, ta.HTTPURL, ta.GRPCAddr))), server.Options{})
	for _, tc := range []struct {
		method, host, acrm, want string
	}{
		{"GET", "web.example.com", "", "forward"},
		{"OPTIONS", "web.example.com", "PUT", ""},
		{"GET", "rpc.example.com", "", "ext"},
		{"GET", "plain.example.com", "", ""},
	} {
		resp, err := decisionClient(ts).Decide(th.CtxTimeout(t), decideRequest(tc.method, tc.host, tc.acrm))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAuthorizer() != tc.want {
			t.Errorf("%s %s: authorizer %q, want %q", tc.method, tc.host, resp.GetAuthorizer(), tc.want)
		}
	}
	if n := ta.HTTPAsked.Load(); n != 0 {
		t.Errorf("Decide asked the authorizer %d times: it must never ask", n)
	}
	list, err := decisionClient(ts).ListPolicies(th.CtxTimeout(t), &corsauthzv1.ListPoliciesRequest{})
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

func decisionClient(ts *th.Server) corsauthzv1.DecisionServiceClient {
	return corsauthzv1.NewDecisionServiceClient(ts.Conn)
}

func decideRequest(method, host, acrm string) *corsauthzv1.DecideRequest {
	return &corsauthzv1.DecideRequest{Method: method, Host: host, Path: "/v1/x", Origin: "https://app.example.com", AccessControlRequestMethod: acrm}
}
