package authorizer_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/policy"
)

func TestPoolSyncKeepsUnchangedClients(t *testing.T) {
	t.Parallel()
	p := authorizer.NewPool(nil, nil)
	defer p.Close()
	a := httpAuthorizer("http://127.0.0.1:1/auth", time.Second)
	b := grpcAuthorizer("127.0.0.1:1", time.Second)
	if err := p.Sync([]policy.Authorizer{a, b}); err != nil {
		t.Fatal(err)
	}
	ca, cb := p.Client("http"), p.Client("grpc")
	changed := grpcAuthorizer("127.0.0.1:2", time.Second)
	if err := p.Sync([]policy.Authorizer{a, changed}); err != nil {
		t.Fatal(err)
	}
	if p.Client("http") != ca {
		t.Error("an unchanged authorizer got a new client")
	}
	if p.Client("grpc") == cb || p.Client("grpc").Config().GRPC.Address != "127.0.0.1:2" {
		t.Error("a changed authorizer kept its old client")
	}
	if err := p.Sync(nil); err != nil {
		t.Fatal(err)
	}
	if p.Client("http") != nil {
		t.Error("a removed authorizer is still there")
	}
	if a := p.Ask(context.Background(), "http", &authorizer.Request{Method: "GET"}); a.Result != authorizer.Error {
		t.Errorf("asking a removed authorizer: %v", a.Result)
	}
}

func TestPoolMetricsAndLogs(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	p := authorizer.NewPool(slog.New(slog.NewTextHandler(&logs, nil)), authorizer.NewMetrics(reg))
	defer p.Close()
	s, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Cookie") == "" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	if err := p.Sync([]policy.Authorizer{httpAuthorizer(s.URL, time.Second), grpcAuthorizer(refusedAddr(t), time.Second)}); err != nil {
		t.Fatal(err)
	}
	req := func(cookie string) *authorizer.Request {
		return &authorizer.Request{Method: "GET", Host: "h", Path: "/", Headers: map[string]string{"cookie": cookie}}
	}
	p.Ask(context.Background(), "http", req("a=1"))
	p.Ask(context.Background(), "http", req(""))
	p.Ask(context.Background(), "http", req(""))
	for range 30 {
		p.Ask(context.Background(), "grpc", req(""))
	}
	want := `
# HELP corsauthz_authorizer_requests_total Calls to each authorizer, by result: allow, deny, error (unreachable, timeout, malformed answer), refused (forward_path and an encoded / or \\ in the path: 400, not asked) or overloaded (too many calls waiting: 503, not asked).
# TYPE corsauthz_authorizer_requests_total counter
corsauthz_authorizer_requests_total{authorizer="grpc",result="allow"} 0
corsauthz_authorizer_requests_total{authorizer="grpc",result="deny"} 0
corsauthz_authorizer_requests_total{authorizer="grpc",result="error"} 30
corsauthz_authorizer_requests_total{authorizer="grpc",result="overloaded"} 0
corsauthz_authorizer_requests_total{authorizer="grpc",result="refused"} 0
corsauthz_authorizer_requests_total{authorizer="http",result="allow"} 1
corsauthz_authorizer_requests_total{authorizer="http",result="deny"} 2
corsauthz_authorizer_requests_total{authorizer="http",result="error"} 0
corsauthz_authorizer_requests_total{authorizer="http",result="overloaded"} 0
corsauthz_authorizer_requests_total{authorizer="http",result="refused"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "corsauthz_authorizer_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "corsauthz_authorizer_request_duration_seconds"); n != 2 {
		t.Errorf("%d latency histograms, want 2", n)
	}
	lines := strings.Count(logs.String(), "authorizer failed")
	if lines == 0 || lines > 2*authorizer.DefaultErrorLogRate {
		t.Errorf("%d error lines for 30 failures, want 1 to %d (rate-limited):\n%s", lines, 2*authorizer.DefaultErrorLogRate, logs.String())
	}
}
