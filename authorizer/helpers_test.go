package authorizer_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// engineYAML has a credentialed policy, a "*" one and a report-only one.
const engineYAML = `authorizers:
  - name: a
    grpc: {address: "127.0.0.1:1", timeout: 1s}
policies:
  - name: creds
    authorizer: a
    allowed_origins: [https://app.example.com]
    allow_credentials: true
    exposed_headers: [X-Request-Id]
    match: {hosts: [creds.example.com]}
  - name: any
    authorizer: a
    allowed_origins: ["*"]
    match: {hosts: [any.example.com]}
  - name: report
    authorizer: a
    report_only: true
    allowed_origins: [https://app.example.com]
    match: {hosts: [report.example.com]}
`

// decide returns the decision for a GET to host from origin.
func decide(t *testing.T, host, origin string) policy.Decision {
	t.Helper()
	e, _, err := policy.Load("engine.yaml", []byte(engineYAML))
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(&policy.Request{Method: "GET", Host: host, Path: "/v1/x", Origin: origin})
	if err != nil {
		t.Fatal(err)
	}
	if e.AuthorizerFor(&d) == "" {
		t.Fatalf("decision %v asks no authorizer", d.Kind)
	}
	return d
}

var (
	fuzzOnce     sync.Once
	fuzzDecision policy.Decision
)

// decideFuzz is decide for the credentialed policy and its allowed origin,
// computed once (fuzz functions run it for every input).
func decideFuzz(t *testing.T) policy.Decision {
	fuzzOnce.Do(func() { fuzzDecision = decide(t, "creds.example.com", "https://app.example.com") })
	return fuzzDecision
}

// checkRequest is a CheckRequest as Envoy sends it.
func checkRequest(method, host, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":authority": host, ":method": method, ":path": path, ":scheme": "https"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: method, Host: host, Path: path, Scheme: "https", Headers: h, Protocol: "HTTP/2",
		}},
		ContextExtensions: map[string]string{"cors_policy": "creds", "tenant": "t1"},
	}}
}

// httpAuthorizer is the configuration of an HTTP authorizer at url.
func httpAuthorizer(url string, timeout time.Duration) policy.Authorizer {
	return policy.Authorizer{Name: "http", OnError: policy.OnErrorDeny, HTTP: &policy.HTTPAuthorizer{
		URL:             url,
		Headers:         []string{"cookie", "authorization"},
		UpstreamHeaders: []string{"x-auth-request-user", "x-auth-request-email"},
		Timeout:         timeout,
	}}
}

func grpcAuthorizer(addr string, timeout time.Duration) policy.Authorizer {
	return policy.Authorizer{Name: "grpc", OnError: policy.OnErrorDeny, GRPC: &policy.GRPCAuthorizer{Address: addr, Timeout: timeout}}
}

func newClient(t *testing.T, a policy.Authorizer) authorizer.Client {
	t.Helper()
	c, err := authorizer.New(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// recordingHandler answers with answer and keeps every request it got.
type recordingHandler struct {
	answer func(w http.ResponseWriter, r *http.Request)
	mu     sync.Mutex
	got    []*http.Request
}

func (h *recordingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.got = append(h.got, r.Clone(context.Background()))
	h.mu.Unlock()
	h.answer(w, r)
}

func (h *recordingHandler) requests() []*http.Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*http.Request(nil), h.got...)
}

func startHTTP(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, *recordingHandler) {
	t.Helper()
	h := &recordingHandler{answer: answer}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s, h
}

// grpcAuthz is an ext_authz server written for the tests.
type grpcAuthz struct {
	authv3.UnimplementedAuthorizationServer
	check func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error)
	mu    sync.Mutex
	got   []*authv3.CheckRequest
}

func (g *grpcAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	g.mu.Lock()
	g.got = append(g.got, req)
	g.mu.Unlock()
	return g.check(ctx, req)
}

func (g *grpcAuthz) requests() []*authv3.CheckRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*authv3.CheckRequest(nil), g.got...)
}

func startGRPC(t *testing.T, check func(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error)) (string, *grpcAuthz) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &grpcAuthz{check: check}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, g)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String(), g
}

// rawServer accepts connections and hands each to serve, for answers no
// well-behaved server gives.
func rawServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); serve(c) })
		}
	})
	return lis.Addr().String()
}

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// resetConn closes c with a TCP reset rather than a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func headerMap(hs []policy.Header) map[string][]string {
	m := map[string][]string{}
	for _, h := range hs {
		k := http.CanonicalHeaderKey(h.Name)
		m[k] = append(m[k], h.Value)
	}
	return m
}

// counter reads corsauthz_authorizer_requests_total{authorizer, result}.
func counter(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "corsauthz_authorizer_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["authorizer"] == name && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
