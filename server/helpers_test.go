package server_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// testConfig has one policy of each sort the ext_authz mapping must tell
// apart. "public" has no match rules: only cors_policy selects it.
const testConfig = `
policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [https://app.example.com, "https://*.preview.example.com"]
    allowed_methods: [GET, POST, PUT, DELETE]
    allowed_headers: [Content-Type, Authorization]
    exposed_headers: [X-Request-Id]
    allow_credentials: true
    max_age_seconds: 600
    allow_private_network: true
  - name: strict
    match:
      hosts: [strict.example.com]
    allowed_origins: [https://app.example.com]
    reject_disallowed_origins: true
  - name: shadow
    match:
      hosts: [shadow.example.com]
    allowed_origins: [https://app.example.com]
    reject_disallowed_origins: true
    report_only: true
  - name: public
    allowed_origins: ["*"]
    allowed_methods: [GET]
  - name: open
    match:
      hosts: [open.example.com]
    allowed_origins: ["*"]
    exposed_headers: [X-Total]
  - name: app
    match:
      hosts: [shared.example.com]
      path_prefixes: [/v1]
    allowed_origins: [https://app.example.com]
    allow_credentials: true
  - name: partners
    match:
      hosts: [shared.example.com]
      path_prefixes: [/v1]
    allowed_origins: [https://partner.example.net]
  - name: open-group
    match:
      hosts: [open.example.com]
      path_prefixes: [/g]
    allowed_origins: ["*"]
  - name: open-group-app
    match:
      hosts: [open.example.com]
      path_prefixes: [/g]
    allowed_origins: [https://app.example.com]
    allow_credentials: true
`

func loadEngine(tb testing.TB, yaml string) *policy.Engine {
	tb.Helper()
	e, _, err := policy.Load("test.yaml", []byte(yaml))
	if err != nil {
		tb.Fatalf("policy.Load: %v", err)
	}
	return e
}

// testServer is a Server serving on loopback ports, with a client.
type testServer struct {
	srv  *server.Server
	conn *grpc.ClientConn
	reg  *prometheus.Registry
	stop context.CancelFunc
	done chan error // Serve's result
}

// startServer starts a Server on free loopback ports; it is stopped when
// the test ends, if the test has not stopped it.
func startServer(tb testing.TB, holder *policy.Holder, opts server.Options) *testServer {
	tb.Helper()
	opts.GRPCAddr, opts.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	srv, err := server.New(holder, opts)
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{srv: srv, reg: opts.Registry, stop: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx) }()
	ts.conn, err = grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	tb.Cleanup(func() {
		cancel()
		ts.conn.Close()
		select {
		case err := <-ts.done:
			if err != nil {
				tb.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			tb.Errorf("Serve did not return 10s after its context was cancelled")
		}
	})
	return ts
}

// shutdown cancels Serve's context and returns a channel that gets Serve's result.
func (ts *testServer) shutdown() <-chan error {
	ts.stop()
	ch := make(chan error, 1)
	go func() {
		err := <-ts.done
		ts.done <- err // for the cleanup
		ch <- err
	}()
	return ch
}

func (ts *testServer) authz() authv3.AuthorizationClient {
	return authv3.NewAuthorizationClient(ts.conn)
}

// get fetches path from the admin server and returns the status and body.
func (ts *testServer) get(tb testing.TB, path string) (int, string) {
	tb.Helper()
	resp, err := http.Get("http://" + ts.srv.AdminAddr().String() + path)
	if err != nil {
		tb.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func ctxTimeout(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// Request and response builders.

type hdrs = map[string]string

func checkRequest(method, host, path string, headers hdrs, corsPolicy string) *authv3.CheckRequest {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method:  method,
			Host:    host,
			Path:    path,
			Headers: headers,
		}},
	}}
	if corsPolicy != "" {
		req.Attributes.ContextExtensions = map[string]string{"cors_policy": corsPolicy}
	}
	return req
}

// rawCheckRequest is checkRequest as Envoy sends it with
// encode_raw_headers: header_map with raw_value instead of headers.
func rawCheckRequest(method, host, path string, headers [][2]string) *authv3.CheckRequest {
	req := checkRequest(method, host, path, nil, "")
	hm := &corev3.HeaderMap{}
	for _, h := range headers {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
	}
	req.Attributes.Request.Http.HeaderMap = hm
	return req
}

func set(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func appendTo(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
	}
}

func okResponse(headers ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			ResponseHeadersToAdd: headers,
		}},
	}
}

func deniedResponse(httpStatus typev3.StatusCode, headers ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: httpStatus},
			Headers: headers,
			Body:    "",
		}},
	}
}

func assertProtoEqual(tb testing.TB, got, want proto.Message) {
	tb.Helper()
	if !proto.Equal(got, want) {
		tb.Errorf("got:\n%s\nwant:\n%s", prototext.Format(got), prototext.Format(want))
	}
}

// waitFor polls cond until it holds or 5 seconds pass.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
