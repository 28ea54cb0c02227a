// Package testharness is the one test harness of the front ends' tests:
// the shared configuration, a server on loopback ports with a client, and
// the request and response builders, instead of a copy in every package's
// tests. Only tests import it.
package testharness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/extauthz"
	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/internal/racedetector"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

// Config has one policy of each sort the ext_authz mapping must tell
// apart. "public" has no match rules: only cors_policy selects it.
const Config = `
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

func LoadEngine(tb testing.TB, yaml string) *policy.Engine {
	tb.Helper()
	e, _, err := policy.Load("test.yaml", []byte(yaml))
	if err != nil {
		tb.Fatalf("policy.Load: %v", err)
	}
	return e
}

// Server is a Server serving on loopback ports, with a client.
type Server struct {
	Srv  *server.Server
	Conn *grpc.ClientConn
	Reg  *prometheus.Registry
	stop context.CancelFunc
	done chan error // Serve's result
}

// StartServer starts a Server on free loopback ports; it is stopped when
// the test ends, if the test has not stopped it.
func StartServer(tb testing.TB, holder *policy.Holder, opts server.Options) *Server {
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
	ts := &Server{Srv: srv, Reg: opts.Registry, stop: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ctx) }()
	ts.Conn, err = grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpc.NewClient: %v", err)
	}
	tb.Cleanup(func() {
		cancel()
		ts.Conn.Close()
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

// Shutdown cancels Serve's context and returns a channel that gets Serve's result.
func (ts *Server) Shutdown() <-chan error {
	ts.stop()
	ch := make(chan error, 1)
	go func() {
		err := <-ts.done
		ts.done <- err // for the cleanup
		ch <- err
	}()
	return ch
}

func (ts *Server) Authz() authv3.AuthorizationClient {
	return authv3.NewAuthorizationClient(ts.Conn)
}

// Get fetches path from the admin server and returns the status and body.
func (ts *Server) Get(tb testing.TB, path string) (int, string) {
	tb.Helper()
	resp, err := http.Get("http://" + ts.Srv.AdminAddr().String() + path)
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

// CtxTimeout is a test's deadline for its calls: a guard against a call
// that hangs, not a measure, so it is widened under the race detector,
// which slows the hostile-input tests' megabyte messages tenfold.
func CtxTimeout(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second*racedetector.CPUFactor)
	tb.Cleanup(cancel)
	return ctx
}

// Request and response builders.

type Hdrs = map[string]string

func CheckRequest(method, host, path string, headers Hdrs, corsPolicy string) *authv3.CheckRequest {
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

// RawCheckRequest is CheckRequest as Envoy sends it with
// encode_raw_headers: header_map with raw_value instead of headers.
func RawCheckRequest(method, host, path string, headers [][2]string) *authv3.CheckRequest {
	req := CheckRequest(method, host, path, nil, "")
	hm := &corev3.HeaderMap{}
	for _, h := range headers {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
	}
	req.Attributes.Request.Http.HeaderMap = hm
	return req
}

func Set(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func AppendTo(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
	}
}

func OKResponse(headers ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			ResponseHeadersToAdd: headers,
		}},
	}
}

func DeniedResponse(httpStatus typev3.StatusCode, headers ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: httpStatus},
			Headers: headers,
			Body:    "",
		}},
	}
}

func AssertProtoEqual(tb testing.TB, got, want proto.Message) {
	tb.Helper()
	if !proto.Equal(got, want) {
		tb.Errorf("got:\n%s\nwant:\n%s", prototext.Format(got), prototext.Format(want))
	}
}

// WaitFor polls cond until it holds or 5 seconds pass.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// LogBuffer collects JSON log lines written from any goroutine.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Logger returns a JSON logger at level writing to b.
func (b *LogBuffer) Logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: level}))
}

// Records returns the lines logged so far, decoded.
func (b *LogBuffer) Records(tb testing.TB) []map[string]any {
	tb.Helper()
	b.mu.Lock()
	data := append([]byte(nil), b.buf.Bytes()...)
	b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			tb.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, rec)
	}
	return out
}

// WithMsg returns the records whose msg is msg.
func (b *LogBuffer) WithMsg(tb testing.TB, msg string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	for _, rec := range b.Records(tb) {
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// Metric returns the value of the sample named exactly series (name and
// labels as /metrics writes them) in the /metrics text body, or -1 when it
// is absent.
func Metric(body, series string) float64 {
	for line := range strings.Lines(body) {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return -1
		}
		return v
	}
	return -1
}

// Values the tests share.
const (
	App           = "https://app.example.com"
	Evil          = "https://evil.example"
	VaryPreflight = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
)

// rawCodec passes messages as their bytes, so that a test sends any bytes
// and sees exactly the bytes the server answers with.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// RawCheck sends req, a serialized CheckRequest, and returns the
// serialized answer.
func RawCheck(ctx context.Context, conn *grpc.ClientConn, req []byte) ([]byte, error) {
	var resp []byte
	err := conn.Invoke(ctx, authv3.Authorization_Check_FullMethodName, &req, &resp, grpc.ForceCodecV2(rawCodec{}))
	return resp, err
}

// AuthorizerConfig puts an HTTP authorizer (at %s) behind "web" and a
// gRPC one (at %s) behind "rpc".
const AuthorizerConfig = `
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

// TestAuthorizers are an HTTP authorizer that allows a request with the
// cookie session=ok, and a gRPC one that allows a request with the header
// x-token: ok; both count what they are asked.
type TestAuthorizers struct {
	HTTPURL, GRPCAddr string
	HTTPAsked         atomic.Int64
	httpMu            sync.Mutex
	HTTPLast          http.Header // the headers of the last HTTP check
	grpcMu            sync.Mutex
	grpcGot           []*authv3.CheckRequest
}

// StartTestAuthorizers starts both on loopback ports until the test ends.
func StartTestAuthorizers(t testing.TB) *TestAuthorizers {
	t.Helper()
	ta := &TestAuthorizers{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ta.HTTPAsked.Add(1)
		ta.httpMu.Lock()
		ta.HTTPLast = r.Header.Clone()
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
	ta.HTTPURL = "http://" + lis.Addr().String()

	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, ta)
	go gs.Serve(glis)
	t.Cleanup(gs.Stop)
	ta.GRPCAddr = glis.Addr().String()
	return ta
}

func (ta *TestAuthorizers) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	ta.grpcMu.Lock()
	ta.grpcGot = append(ta.grpcGot, req)
	ta.grpcMu.Unlock()
	if req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-token"] != "ok" {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
				Headers: []*corev3.HeaderValueOption{Set("www-authenticate", "Bearer")},
				Body:    "token required",
			}},
		}, nil
	}
	meta, _ := structpb.NewStruct(map[string]any{"sub": "alice"})
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{Set("x-user", "alice")},
			HeadersToRemove:      []string{"x-token"},
			QueryParametersToSet: []*corev3.QueryParameter{{Key: "sub", Value: "alice"}},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{Set("access-control-allow-origin", "*"), Set("x-checked", "yes")},
		}},
		DynamicMetadata: meta,
	}, nil
}

// GRPCRequests are the requests the gRPC authorizer got.
func (ta *TestAuthorizers) GRPCRequests() []*authv3.CheckRequest {
	ta.grpcMu.Lock()
	defer ta.grpcMu.Unlock()
	return append([]*authv3.CheckRequest(nil), ta.grpcGot...)
}

var _ authv3.AuthorizationServer = (*TestAuthorizers)(nil)

// String is everything logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// LastHTTPHeaders are the headers of the last HTTP check.
func (ta *TestAuthorizers) LastHTTPHeaders() http.Header {
	ta.httpMu.Lock()
	defer ta.httpMu.Unlock()
	return ta.HTTPLast.Clone()
}

// NewCore is a decision core deciding with holder's engine, its
// authorizer clients synced, closed when the test ends.
func NewCore(tb testing.TB, holder *policy.Holder, logger *slog.Logger) *decision.Core {
	tb.Helper()
	c := decision.New(holder, decision.Options{Logger: logger})
	if err := c.Sync(holder.Load()); err != nil {
		tb.Fatalf("sync the authorizers: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// HTTPCheck asks the HTTP listener at addr about req, as NGINX does
// (nginxStyle: X-Original-* headers) or as Envoy's http_service does.
func HTTPCheck(t testing.TB, addr string, req *corsauthzv1.DecideRequest, nginxStyle bool) (*http.Response, string) {
	t.Helper()
	method, target := req.Method, req.Path
	hreq, err := http.NewRequestWithContext(CtxTimeout(t), method, "http://"+addr+"/", nil)
	if nginxStyle {
		method, target = "GET", "/check"
		hreq, err = http.NewRequestWithContext(CtxTimeout(t), method, "http://"+addr+target, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if nginxStyle {
		hreq.Header.Set("X-Original-Method", req.Method)
		hreq.Header.Set("X-Original-Host", req.Host)
		hreq.Header.Set("X-Original-URI", req.Path)
	} else {
		hreq.Host = req.Host
		hreq.URL.Opaque = target // the path as is, as Envoy sends it
	}
	for name, v := range map[string]string{
		"Origin":                                 req.Origin,
		"Access-Control-Request-Method":          req.AccessControlRequestMethod,
		"Access-Control-Request-Headers":         req.AccessControlRequestHeaders,
		"Access-Control-Request-Private-Network": req.AccessControlRequestPrivateNetwork,
		httpauthz.HeaderPolicy:                   req.Policy,
	} {
		// An empty Origin is sent as one (Envoy's http_service forwards it).
		if v != "" || (name == "Origin" && req.GetOriginPresent()) {
			hreq.Header.Set(name, v)
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(hreq)
	if err != nil {
		t.Fatalf("HTTP check: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// AsCheckRequest is the CheckRequest Envoy sends for req.
func AsCheckRequest(req *corsauthzv1.DecideRequest) *authv3.CheckRequest {
	headers := map[string]string{":authority": req.Host, ":method": req.Method, ":path": req.Path}
	for name, v := range map[string]string{
		"origin":                                 req.Origin,
		"access-control-request-method":          req.AccessControlRequestMethod,
		"access-control-request-headers":         req.AccessControlRequestHeaders,
		"access-control-request-private-network": req.AccessControlRequestPrivateNetwork,
	} {
		if v != "" || (name == "origin" && req.OriginPresent) {
			headers[name] = v
		}
	}
	cr := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: req.Method, Host: req.Host, Path: req.Path, Headers: headers},
	}}}
	if req.Policy != "" {
		cr.Attributes.ContextExtensions = map[string]string{extauthz.ContextExtensionPolicy: req.Policy}
	}
	return cr
}
