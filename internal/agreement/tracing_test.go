package agreement_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	th "github.com/corsauthz/corsauthz/internal/testharness"
	"github.com/corsauthz/corsauthz/middleware"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

// TestTracingEveryFrontEnd: with tracing on, a request carrying a W3C
// traceparent (Envoy's, in the gRPC metadata of Check; a gateway's, in
// the HTTP headers) gets a corsauthz span in that trace, a child span for
// the authorizer call, and the authorizer is sent the same trace. The
// spans say the policy, decision kind and action, and carry no query
// string and no cookie.
func TestTracingEveryFrontEnd(t *testing.T) {
	var mu sync.Mutex
	authTraces := map[string]string{} // X-Row -> the traceparent the authorizer got
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		authTraces[r.Header.Get("X-Row")] = r.Header.Get("Traceparent")
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(auth.Close)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	holder := policy.NewHolder(th.LoadEngine(t, fmt.Sprintf(`
authorizers:
  - name: sso
    http: {url: "%s/auth", headers: [cookie, x-row], timeout: 2s}
policies:
  - name: api
    authorizer: sso
    match: {hosts: [api.example.com]}
    allowed_origins: [https://app.example.com]
`, auth.URL)))
	ts := th.StartServer(t, holder, server.Options{HTTPAddr: "127.0.0.1:0", TracerProvider: tp})
	mw, err := middleware.New(th.CtxTimeout(t), middleware.Options{Address: ts.Srv.GRPCAddr().String(), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mw.Close() })

	const secretQuery = "access_token=s3cret"
	traceparent := func(i int) (string, trace.TraceID) {
		var id trace.TraceID
		copy(id[:], fmt.Sprintf("corsauthz-trace%d", i))
		return fmt.Sprintf("00-%s-00f067aa0ba902b7-01", id), id
	}
	for i, fe := range []struct {
		name   string
		send   func(t *testing.T, tp string)
		authed bool // the front end asks the authorizer
	}{
		{"ext_authz", func(t *testing.T, tp string) {
			ctx := metadata.AppendToOutgoingContext(th.CtxTimeout(t), "traceparent", tp)
			req := th.CheckRequest("GET", "api.example.com", "/v1/x?"+secretQuery, th.Hdrs{"origin": th.App, "cookie": "s=1", "x-row": "0"}, "")
			if _, err := ts.Authz().Check(ctx, req); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"decision API", func(t *testing.T, tp string) {
			ctx := metadata.AppendToOutgoingContext(th.CtxTimeout(t), "traceparent", tp)
			if _, err := corsauthzv1.NewDecisionServiceClient(ts.Conn).Decide(ctx, &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/v1/x?" + secretQuery, Origin: th.App}); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"HTTP listener", func(t *testing.T, tp string) {
			req, _ := http.NewRequest("GET", "http://"+ts.Srv.HTTPAddr().String()+"/v1/x?"+secretQuery, nil)
			req.Host = "api.example.com"
			req.Header = http.Header{"Origin": {th.App}, "Traceparent": {tp}, "Cookie": {"s=1"}, "X-Row": {"2"}}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}, true},
		{"middleware", func(t *testing.T, tp string) {
			r := httptest.NewRequest("GET", "http://api.example.com/v1/x?"+secretQuery, nil)
			r.Header = http.Header{"Origin": {th.App}, "Traceparent": {tp}, "Cookie": {"s=1"}, "X-Row": {"3"}}
			mw.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).ServeHTTP(httptest.NewRecorder(), r)
		}, true},
	} {
		t.Run(fe.name, func(t *testing.T) {
			tp, id := traceparent(i)
			fe.send(t, tp)
			var server, child sdktrace.ReadOnlySpan
			deadline := time.Now().Add(5 * time.Second)
			for server == nil || (fe.authed && child == nil) {
				for _, s := range rec.Ended() {
					if s.SpanContext().TraceID() != id {
						continue
					}
					switch {
					case s.SpanKind() == trace.SpanKindServer:
						server = s
					case s.SpanKind() == trace.SpanKindClient && strings.HasPrefix(s.Name(), "authorizer "):
						child = s
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("no corsauthz span in trace %s (server %v, authorizer %v)", id, server != nil, child != nil)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if server.Parent().SpanID().String() != "00f067aa0ba902b7" {
				t.Errorf("span parent %s, want the caller's span 00f067aa0ba902b7", server.Parent().SpanID())
			}
			attrs := map[string]string{}
			for _, kv := range server.Attributes() {
				attrs[string(kv.Key)] = kv.Value.Emit()
				if strings.Contains(kv.Value.Emit(), "s3cret") || strings.Contains(kv.Value.Emit(), "s=1") {
					t.Errorf("attribute %s carries the query or the cookie: %q", kv.Key, kv.Value.Emit())
				}
			}
			if attrs["corsauthz.policy"] != "api" || attrs["corsauthz.decision.kind"] != "actual_allowed" || attrs["corsauthz.action"] != "pass" {
				t.Errorf("span attributes %v, want policy api, kind actual_allowed, action pass", attrs)
			}
			if !fe.authed {
				return
			}
			if child.Parent().SpanID() != server.SpanContext().SpanID() {
				t.Errorf("the authorizer span's parent is %s, want the corsauthz span %s", child.Parent().SpanID(), server.SpanContext().SpanID())
			}
			mu.Lock()
			got := authTraces[fmt.Sprint(i)]
			mu.Unlock()
			if want := fmt.Sprintf("00-%s-%s-01", id, child.SpanContext().SpanID()); got != want {
				t.Errorf("the authorizer got traceparent %q, want %q (the authorizer span's)", got, want)
			}
		})
	}
}

// TestCheckWithoutTracingAddsNothing: tracing off, a traceparent in the
// metadata changes nothing of the answer, and no span is made (the fast
// path's allocation test, extauthz/fixed_answers_internal_test.go, holds
// the cost to nothing).
func TestCheckWithoutTracingAddsNothing(t *testing.T) {
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	ctx := metadata.AppendToOutgoingContext(th.CtxTimeout(t), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	with, err := ts.Authz().Check(ctx, th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, ""))
	if err != nil {
		t.Fatal(err)
	}
	without, err := ts.Authz().Check(th.CtxTimeout(t), th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, ""))
	if err != nil {
		t.Fatal(err)
	}
	th.AssertProtoEqual(t, with, without)
}
