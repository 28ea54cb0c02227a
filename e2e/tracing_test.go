package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/corsauthz/corsauthz/internal/childproc"
	"github.com/corsauthz/corsauthz/internal/tracing"
	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// jaegerEnv makes a missing Jaeger a failure instead of a skip (CI sets
// CORSAUTHZ_E2E_JAEGER=require); jaegerBinEnv names the binary, built from
// the Go module proxy (github.com/jaegertracing/jaeger/cmd/jaeger v1.75.0;
// see .ci/run).
const (
	jaegerEnv    = "CORSAUTHZ_E2E_JAEGER"
	jaegerBinEnv = "CORSAUTHZ_JAEGER"
)

// jaegerConfig is Jaeger v2 with in-memory storage, OTLP over HTTP in and
// the query API out, every listener on 127.0.0.1.
const jaegerConfig = `
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%[2]s
    grpc:
      endpoint: 127.0.0.1:%[3]s
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 1000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%[1]s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// TestTracesReachJaeger: with the OTEL_* environment pointing at a real
// Jaeger, a Check carrying Envoy's traceparent in its metadata produces a
// corsauthz span in that trace with a child span for the authorizer, and
// the authorizer (a test HTTP server) is sent the same trace.
func TestTracesReachJaeger(t *testing.T) {
	bin := os.Getenv(jaegerBinEnv)
	if bin == "" {
		if os.Getenv(jaegerEnv) == "require" {
			t.Fatalf("%s is not set (%s=require)", jaegerBinEnv, jaegerEnv)
		}
		t.Skipf("set %s to a Jaeger v2 binary (see .ci/run: go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@v1.75.0 in a module of its own, then go build); %s=require makes this a failure", jaegerBinEnv, jaegerEnv)
	}
	otlpPort, queryPort, queryGRPCPort := freePort(t), freePort(t), freePort(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(jaegerConfig, otlpPort, queryPort, queryGRPCPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	// Jaeger's own components trace themselves to localhost:4317 unless told not to.
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := childproc.Start(t, cmd); err != nil {
		t.Fatalf("start Jaeger: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	query := "http://127.0.0.1:" + queryPort
	waitHTTP(t, query+"/api/services", exited)

	var mu sync.Mutex
	var authTraceparent string
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		authTraceparent = r.Header.Get("Traceparent")
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(auth.Close)

	// The exporter reads the OTEL_EXPORTER_OTLP_* variables from the
	// process environment, as in production.
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:"+otlpPort)
	t.Setenv("OTEL_SERVICE_NAME", "corsauthz-e2e")
	tp, err := tracing.Setup(context.Background(), "e2e", os.Getenv)
	if err != nil || tp == nil {
		t.Fatalf("tracing.Setup = %v, %v", tp, err)
	}
	e, _, err := policy.Load("tracing.yaml", []byte(fmt.Sprintf(`
authorizers:
  - name: sso
    http: {url: "%s/auth", timeout: 2s}
policies:
  - name: api
    authorizer: sso
    allowed_origins: [https://app.example.com]
default_policy: api
`, auth.URL)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(policy.NewHolder(e), server.Options{GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: prometheus.NewRegistry(), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, srv)
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	_, err = authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: "/v1/orders", Headers: map[string]string{"origin": "https://app.example.com"},
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatalf("flush the spans: %v", err)
	}

	var trace jaegerTrace
	deadline := time.Now().Add(15 * time.Second)
	for {
		trace = getTrace(t, query, traceID)
		if len(trace.Spans) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var check, authz *jaegerSpan
	for i := range trace.Spans {
		switch s := &trace.Spans[i]; {
		case s.OperationName == "corsauthz ext_authz Check":
			check = s
		case strings.HasPrefix(s.OperationName, "authorizer "):
			authz = s
		}
	}
	if check == nil || authz == nil {
		t.Fatalf("trace %s in Jaeger: spans %+v, want a corsauthz Check span and an authorizer span", traceID, trace.Spans)
	}
	if !check.hasParent("00f067aa0ba902b7") {
		t.Errorf("the Check span's parent is not Envoy's span: %+v", check.References)
	}
	if !authz.hasParent(check.SpanID) {
		t.Errorf("the authorizer span's parent is not the Check span: %+v", authz.References)
	}
	if check.tag("corsauthz.policy") != "api" || check.tag("corsauthz.decision.kind") != "actual_allowed" {
		t.Errorf("Check span tags %+v, want policy api, kind actual_allowed", check.Tags)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := "00-" + traceID + "-" + authz.SpanID + "-01"; authTraceparent != want {
		t.Errorf("the authorizer got traceparent %q, want %q", authTraceparent, want)
	}
}

type jaegerTrace struct {
	Spans []jaegerSpan `json:"spans"`
}

type jaegerSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

func (s *jaegerSpan) hasParent(id string) bool {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" && r.SpanID == id {
			return true
		}
	}
	return false
}

func (s *jaegerSpan) tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

// getTrace asks Jaeger's query API for the trace, empty when it has none.
func getTrace(t *testing.T, query, id string) jaegerTrace {
	t.Helper()
	resp, err := http.Get(query + "/api/traces/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []jaegerTrace `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil || len(body.Data) == 0 {
		return jaegerTrace{}
	}
	return body.Data[0]
}

// waitHTTP waits until url answers 200, or the process exits.
func waitHTTP(t *testing.T, url string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("exited before answering %s: %v", url, err)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering 30s after start", url)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
