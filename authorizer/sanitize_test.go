package authorizer_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

// corsOf is what corsauthz's decision for https://app.example.com on the
// credentialed policy adds: the only CORS headers an outcome may carry.
var corsOf = map[string][]string{
	"Access-Control-Allow-Origin":      {"https://app.example.com"},
	"Access-Control-Allow-Credentials": {"true"},
	"Access-Control-Expose-Headers":    {"X-Request-Id"},
}

// rawHTTP serves answer, byte for byte, to every request (after reading
// its header block), then holds the connection until hold ends or the
// client closes it.
func rawHTTP(t *testing.T, answer string, hold time.Duration) string {
	t.Helper()
	return "http://" + rawServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		c.Write([]byte(answer))
		c.SetReadDeadline(time.Now().Add(hold))
		r.ReadByte() // returns when the client closes, or at hold
	}) + "/auth"
}

// sanitationRows are answers no authorizer should give, each with the
// outcome corsauthz gives instead; FuzzAnswers starts from them too.
type sanitationRow struct {
	desc string
	// Exactly one of rawAnswer (an HTTP authorizer's answer, as bytes)
	// and check (a gRPC authorizer's CheckResponse).
	rawAnswer string
	check     *authv3.CheckResponse

	result  authorizer.Result
	status  int                 // of the outcome when it does not pass
	headers map[string][]string // of the outcome, CORS headers left out
	body    string
	// request and response are a pass's headers for the upstream request
	// and the authorizer's for the upstream response.
	request, response []policy.Header
}

func opt(name, value string) *corev3.HeaderValueOption {
	return option(name, value, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD)
}

func denied(code int32, headers []*corev3.HeaderValueOption, body string) *authv3.CheckResponse {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 7}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(code)}, Headers: headers, Body: body}}}
}

func allowedWith(ok *authv3.OkHttpResponse) *authv3.CheckResponse {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok}}
}

// injected are the headers an authorizer must never get past corsauthz,
// each with a value that would do harm.
var injected = []*corev3.HeaderValueOption{
	opt("access-control-allow-origin", "https://evil.example"),
	opt("Access-Control-Allow-Credentials", "true"),
	opt("access-control-expose-headers", "*"),
	opt("ACCESS-CONTROL-ALLOW-METHODS", "DELETE"),
	opt("x-accel-redirect", "/public/granted"),
	opt("X-Accel-Buffering", "no"),
	opt("content-length", "0"),
	opt("transfer-encoding", "chunked"),
	opt("connection", "close"),
	opt("keep-alive", "timeout=5"),
	opt("upgrade", "websocket"),
	opt("te", "trailers"),
	opt("trailer", "x-t"),
	opt("proxy-authenticate", "Basic"),
	opt("proxy-connection", "keep-alive"),
	opt(":status", "200"),
	opt("x-split", "a\r\nX-Injected: 1"),
	opt("x-nul", "a\x00b"),
	opt("bad name", "v"),
}

var sanitationRows = []sanitationRow{
	{
		desc: "HTTP 401 with CORS, X-Accel, framing and hop-by-hop headers: all dropped, Vary merged",
		rawAnswer: "HTTP/1.1 401 Unauthorized\r\n" +
			"Access-Control-Allow-Origin: https://evil.example\r\nAccess-Control-Allow-Credentials: true\r\n" +
			"Access-Control-Expose-Headers: *\r\nAccess-Control-Allow-Methods: DELETE\r\n" +
			"X-Accel-Redirect: /public/granted\r\nX-Accel-Buffering: no\r\n" +
			"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n" +
			"Upgrade: h2c\r\nTrailer: X-T\r\nVary: Cookie\r\nWWW-Authenticate: Bearer\r\nContent-Length: 5\r\n\r\nlogin",
		result: authorizer.Deny, status: 401, body: "login",
		headers: map[string][]string{"Www-Authenticate": {"Bearer"}, "Vary": {"Cookie, Origin"}},
	},
	{
		desc:      "HTTP 200 with CORS and X-Accel headers: an allow adds only corsauthz's",
		rawAnswer: "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nX-Accel-Redirect: /x\r\nX-Auth-Request-User: alice\r\nContent-Length: 0\r\n\r\n",
		result:    authorizer.Allow, headers: map[string][]string{"Vary": {"Origin"}},
		request: []policy.Header{{Name: "x-auth-request-user", Value: "alice"}},
	},
	{
		desc:      "HTTP 302 is no denial status: 403",
		rawAnswer: "HTTP/1.1 302 Found\r\nLocation: https://login.example.com/\r\nContent-Length: 0\r\n\r\n",
		result:    authorizer.Deny, status: 403, headers: map[string][]string{"Location": {"https://login.example.com/"}, "Vary": {"Origin"}},
	},
	{
		desc:      "HTTP 304: 403",
		rawAnswer: "HTTP/1.1 304 Not Modified\r\n\r\n",
		result:    authorizer.Deny, status: 403, headers: map[string][]string{"Vary": {"Origin"}},
	},
	{
		desc:      "HTTP 600, out of range: 403",
		rawAnswer: "HTTP/1.1 600 Strange\r\nContent-Length: 0\r\n\r\n",
		result:    authorizer.Deny, status: 403, headers: map[string][]string{"Vary": {"Origin"}},
	},
	{
		desc:      "HTTP 599 stays",
		rawAnswer: "HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n",
		result:    authorizer.Deny, status: 599, headers: map[string][]string{"Vary": {"Origin"}},
	},
	{
		desc:      "HTTP 103 Early Hints with a CORS header, then 401: the hint is not the answer",
		rawAnswer: "HTTP/1.1 103 Early Hints\r\nAccess-Control-Allow-Origin: *\r\nLink: </a.css>\r\n\r\nHTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n",
		result:    authorizer.Deny, status: 401, headers: map[string][]string{"Vary": {"Origin"}},
	},
	{
		desc:      "HTTP 101 Switching Protocols: a failure, at once",
		rawAnswer: "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		result:    authorizer.Error, status: 503,
	},
	{
		desc:      "HTTP 100 Continue, then nothing: a failure within the timeout",
		rawAnswer: "HTTP/1.1 100 Continue\r\n\r\n",
		result:    authorizer.Error, status: 503,
	},
	{
		desc:      "HTTP answer with 101 header lines: a failure",
		rawAnswer: "HTTP/1.1 401 Unauthorized\r\n" + strings.Repeat("X-Many: 1\r\n", 100) + "Content-Length: 0\r\n\r\n",
		result:    authorizer.Error, status: 503,
	},
	{
		desc:   "gRPC denial with every injected header: dropped, Vary merged",
		check:  denied(401, append([]*corev3.HeaderValueOption{opt("www-authenticate", "Bearer"), option("vary", "Authorization", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)}, injected...), "no"),
		result: authorizer.Deny, status: 401, body: "no",
		headers: map[string][]string{"Www-Authenticate": {"Bearer"}, "Vary": {"Authorization, Origin"}},
	},
	{desc: "gRPC denial status 200: 403", check: denied(200, nil, ""), result: authorizer.Deny, status: 403, headers: map[string][]string{"Vary": {"Origin"}}},
	{desc: "gRPC denial status 204: 403", check: denied(204, nil, ""), result: authorizer.Deny, status: 403, headers: map[string][]string{"Vary": {"Origin"}}},
	{desc: "gRPC denial status 100: 403", check: denied(100, nil, ""), result: authorizer.Deny, status: 403, headers: map[string][]string{"Vary": {"Origin"}}},
	{desc: "gRPC denial status 99: 403", check: denied(99, nil, ""), result: authorizer.Deny, status: 403, headers: map[string][]string{"Vary": {"Origin"}}},
	{desc: "gRPC denial status 1000: 403", check: denied(1000, nil, ""), result: authorizer.Deny, status: 403, headers: map[string][]string{"Vary": {"Origin"}}},
	{desc: "gRPC denial status 307: 403", check: denied(307, []*corev3.HeaderValueOption{opt("location", "/x")}, ""), result: authorizer.Deny, status: 403, headers: map[string][]string{"Location": {"/x"}, "Vary": {"Origin"}}},
	{desc: "gRPC denial status -1: 403", check: denied(-1, nil, ""), result: authorizer.Deny, status: 403, headers: map[string][]string{"Vary": {"Origin"}}},
	{
		desc: "gRPC ok_response: request headers stay request headers, response headers response headers, neither with a CORS header",
		check: allowedWith(&authv3.OkHttpResponse{
			Headers:              append([]*corev3.HeaderValueOption{opt("x-user", "alice")}, injected...),
			ResponseHeadersToAdd: append([]*corev3.HeaderValueOption{opt("x-served-by", "opa")}, injected...),
			HeadersToRemove:      []string{"x-client-user"},
		}),
		result: authorizer.Allow, headers: map[string][]string{"Vary": {"Origin"}},
		request: []policy.Header{{Name: "x-user", Value: "alice"}}, response: []policy.Header{{Name: "x-served-by", Value: "opa"}},
	},
	{
		desc:   "gRPC answer with 101 header options: a failure",
		check:  denied(401, manyOptions(101), ""),
		result: authorizer.Error, status: 503,
	},
	{
		desc:   "gRPC denial with 30,000 distinct headers: a failure, quickly",
		check:  denied(401, manyOptions(30_000), ""),
		result: authorizer.Error, status: 503,
	},
}

func manyOptions(n int) []*corev3.HeaderValueOption {
	out := make([]*corev3.HeaderValueOption, n)
	for i := range out {
		out[i] = opt(fmt.Sprintf("x-h%d", i), "v")
	}
	return out
}

// TestAnswerSanitation: whatever an authorizer answers, on a real socket,
// the merged outcome carries no CORS header but corsauthz's, no framing,
// hop-by-hop or X-Accel-* header, a denial status in 400–599, request
// headers only as request headers; and every call ends within its timeout.
func TestAnswerSanitation(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	d := decide(t, "creds.example.com", "https://app.example.com")
	for _, tc := range sanitationRows {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			var c authorizer.Client
			if tc.check != nil {
				addr, _ := startGRPC(t, func(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) { return tc.check, nil })
				c = newClient(t, grpcAuthorizer(addr, timeout))
			} else {
				c = newClient(t, httpAuthorizer(rawHTTP(t, tc.rawAnswer, 5*time.Second), timeout))
			}
			start := time.Now()
			a := c.Ask(context.Background(), &authorizer.Request{Check: checkRequest("GET", "creds.example.com", "/v1/x", nil)})
			if elapsed := time.Since(start); elapsed > timeout+time.Second {
				t.Errorf("the call took %s, past its timeout of %s", elapsed, timeout)
			}
			out := authorizer.Merge(&d, a, false)
			checkOutcome(t, &out)
			if out.Result != tc.result {
				t.Fatalf("result %v (%v), want %v", out.Result, a.Err, tc.result)
			}
			if a.Err != nil {
				t.Logf("error: %v", a.Err)
			}
			if !out.Pass && out.Status != tc.status {
				t.Errorf("status %d, want %d", out.Status, tc.status)
			}
			if tc.result == authorizer.Error {
				return
			}
			got := headerMap(out.Headers)
			delete(got, "Date")
			for k := range corsOf {
				if !reflect.DeepEqual(got[k], corsOf[k]) {
					t.Errorf("%s = %q, want corsauthz's %q", k, got[k], corsOf[k])
				}
				delete(got, k)
			}
			if !reflect.DeepEqual(got, tc.headers) {
				t.Errorf("headers = %v\nwant %v", got, tc.headers)
			}
			if string(out.Body) != tc.body {
				t.Errorf("body %q, want %q", out.Body, tc.body)
			}
			if !reflect.DeepEqual(out.RequestHeaders, tc.request) || !reflect.DeepEqual(out.ResponseHeaders, tc.response) {
				t.Errorf("request headers %v, response headers %v\nwant %v, %v", out.RequestHeaders, out.ResponseHeaders, tc.request, tc.response)
			}
		})
	}
}

// checkOutcome checks the invariants every outcome keeps, whatever the
// answer: only corsauthz's CORS headers, no header that could frame or
// redirect the gateway's answer, a non-passing status in 400–599, a
// bounded size, and the upstream request's headers never in the response.
func checkOutcome(t *testing.T, out *authorizer.Outcome) {
	t.Helper()
	if !out.Pass && (out.Status < 400 || out.Status > 599) {
		t.Errorf("a direct answer with status %d", out.Status)
	}
	if len(out.Body) > authorizer.MaxBodyBytes {
		t.Errorf("a body of %d bytes", len(out.Body))
	}
	n := len(out.Headers) + len(out.ResponseHeaders) + len(out.RequestHeaders)
	if n > 2*authorizer.MaxAnswerHeaders+policy.MaxHeaders+2 {
		t.Errorf("%d headers", n)
	}
	check := func(where string, hs []policy.Header, corsAllowed bool) {
		for _, h := range hs {
			lower := strings.ToLower(h.Name)
			if strings.HasPrefix(lower, "access-control-") && (!corsAllowed || corsOf[http.CanonicalHeaderKey(h.Name)] == nil || h.Value != corsOf[http.CanonicalHeaderKey(h.Name)][0]) {
				t.Errorf("%s: %s: %s is not corsauthz's", where, h.Name, h.Value)
			}
			if strings.HasPrefix(lower, "x-accel-") || strings.HasPrefix(lower, "proxy-") || strings.ContainsAny(h.Value, "\r\n\x00") {
				t.Errorf("%s: %s: %q passed", where, h.Name, h.Value)
			}
			switch lower {
			case "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer":
				t.Errorf("%s: %s passed", where, h.Name)
			}
		}
	}
	check("headers", out.Headers, true)
	check("response headers", out.ResponseHeaders, false)
	check("request headers", out.RequestHeaders, false)
	if out.OK != nil {
		for _, list := range [][]*corev3.HeaderValueOption{out.OK.GetHeaders(), out.OK.GetResponseHeadersToAdd()} {
			var hs []policy.Header
			for _, o := range list {
				hs = append(hs, policy.Header{Name: o.GetHeader().GetKey(), Value: o.GetHeader().GetValue() + string(o.GetHeader().GetRawValue())})
			}
			check("ok_response", hs, false)
		}
		// The request's edits are in the request's lists only.
		for _, o := range out.OK.GetHeaders() {
			for _, h := range append(out.Headers, out.ResponseHeaders...) {
				if strings.EqualFold(h.Name, o.GetHeader().GetKey()) && !strings.EqualFold(h.Name, "vary") {
					t.Errorf("the upstream request's %s became a response header", h.Name)
				}
			}
		}
	}
	if ok := out.OkHTTPResponse(); out.Pass == (ok == nil) {
		t.Errorf("OkHTTPResponse = %v for a pass %v", ok, out.Pass)
	}
}

// TestOkHTTPResponse: the ext_authz rendering of a pass holds the
// authorizer's edits once, and corsauthz's CORS headers as response
// headers.
func TestOkHTTPResponse(t *testing.T) {
	t.Parallel()
	d := decide(t, "creds.example.com", "https://app.example.com")
	grpcOK := &authv3.OkHttpResponse{
		Headers:              []*corev3.HeaderValueOption{option("x-user", "alice", corev3.HeaderValueOption_ADD_IF_ABSENT), opt("access-control-allow-origin", "*")},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{opt("x-served-by", "opa")},
		QueryParametersToSet: []*corev3.QueryParameter{{Key: "user", Value: "alice"}},
	}
	cors := []*corev3.HeaderValueOption{
		opt("Access-Control-Allow-Origin", "https://app.example.com"),
		opt("Access-Control-Allow-Credentials", "true"),
		opt("Access-Control-Expose-Headers", "X-Request-Id"),
		option("Vary", "Origin", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
	}
	tests := []struct {
		desc   string
		answer *authorizer.Answer
		want   *authv3.OkHttpResponse
	}{
		{
			desc:   "gRPC: its own, exact actions and query parameters kept, CORS header dropped, corsauthz's added",
			answer: &authorizer.Answer{Result: authorizer.Allow, Check: allowedWith(grpcOK)},
			want: &authv3.OkHttpResponse{
				Headers:              grpcOK.Headers[:1],
				ResponseHeadersToAdd: append([]*corev3.HeaderValueOption{opt("x-served-by", "opa")}, cors...),
				QueryParametersToSet: grpcOK.QueryParametersToSet,
			},
		},
		{
			desc: "HTTP: upstream headers set and removed",
			answer: &authorizer.Answer{Result: authorizer.Allow, SetUpstream: []policy.Header{{Name: "x-auth-request-user", Value: "alice"}},
				RemoveUpstream: []string{"x-auth-request-email"}},
			want: &authv3.OkHttpResponse{
				Headers:              []*corev3.HeaderValueOption{opt("x-auth-request-user", "alice")},
				HeadersToRemove:      []string{"x-auth-request-email"},
				ResponseHeadersToAdd: cors,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			out := authorizer.Merge(&d, tc.answer, false)
			if got := out.OkHTTPResponse(); !proto.Equal(got, tc.want) {
				t.Errorf("OkHTTPResponse =\n%v\nwant\n%v", got, tc.want)
			}
			if again := out.OkHTTPResponse(); len(again.GetResponseHeadersToAdd()) != len(tc.want.GetResponseHeadersToAdd()) {
				t.Error("OkHTTPResponse changed the outcome")
			}
		})
	}
}

// TestMergeLinear: merging a denial costs time linear in its headers
// (issue 17's 30,000 distinct headers took 2 s through the HTTP
// listener's quadratic merge). Merge is given the answer directly, past
// the readers' MaxAnswerHeaders, to time it alone.
func TestMergeLinear(t *testing.T) {
	t.Parallel()
	d := decide(t, "creds.example.com", "https://app.example.com")
	answer := func(n int) *authorizer.Answer {
		a := &authorizer.Answer{Result: authorizer.Deny, Status: 401}
		for i := range n {
			a.Headers = append(a.Headers, policy.Header{Name: fmt.Sprintf("X-H%d", i), Value: "v"},
				policy.Header{Name: "Access-Control-Allow-Origin", Value: "*"}, policy.Header{Name: "Vary", Value: "Cookie"})
		}
		return a
	}
	cost := func(n int) time.Duration {
		a := answer(n)
		best := time.Hour
		for range 5 {
			start := time.Now()
			out := authorizer.Merge(&d, a, false)
			best = min(best, time.Since(start))
			if len(out.Headers) != n+len(corsOf)+1 {
				t.Fatalf("%d headers out of %d", len(out.Headers), n)
			}
		}
		return best
	}
	small, large := cost(3_000), cost(30_000)
	t.Logf("Merge of a denial with 3,000 x 3 headers: %s; with 30,000 x 3: %s", small, large)
	if large > 50*small+10*time.Millisecond { // quadratic: 100 times
		t.Errorf("10 times the headers cost %.0f times the time: not linear", float64(large)/float64(small))
	}
}
