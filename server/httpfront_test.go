package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

func TestHTTPMetricsAndLogs(t *testing.T) {
	t.Parallel()
	var logs th.LogBuffer
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		HTTPAddr: "127.0.0.1:0", Logger: logs.Logger(slog.LevelDebug),
	})
	addr := ts.Srv.HTTPAddr().String()
	allowed := &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: th.App}
	th.HTTPCheck(t, addr, allowed, true)
	th.HTTPCheck(t, addr, allowed, false)
	th.HTTPCheck(t, addr, &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: th.App, Policy: "nope-from-the-gateway"}, true)
	th.HTTPCheck(t, addr, &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: "https://\xffsecret.example"}, true)
	_, _ = ts.Authz().Check(th.CtxTimeout(t), th.AsCheckRequest(allowed))

	_, body := ts.Get(t, "/metrics")
	for series, want := range map[string]float64{
		`corsauthz_front_end_requests_total{front_end="http",outcome="actual_allowed"}`:       2,
		`corsauthz_front_end_requests_total{front_end="http",outcome="FailedPrecondition"}`:   1,
		`corsauthz_front_end_requests_total{front_end="http",outcome="InvalidArgument"}`:      1,
		`corsauthz_front_end_requests_total{front_end="ext_authz",outcome="actual_allowed"}`:  1,
		`corsauthz_front_end_requests_total{front_end="ext_authz",outcome="InvalidArgument"}`: 0,
		`corsauthz_decisions_total{kind="actual_allowed",policy="api"}`:                       3,
		`corsauthz_check_errors_total{code="InvalidArgument"}`:                                1,
		`corsauthz_check_errors_total{code="FailedPrecondition"}`:                             1,
	} {
		if got := th.Metric(body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if n := len(logs.WithMsg(t, "cors decision")); n != 3 {
		t.Errorf("%d decision lines, want 3 (2 over HTTP, 1 over gRPC)", n)
	}
	refused := logs.WithMsg(t, "request refused: unreadable request")
	if len(refused) != 1 || refused[0]["status"] != float64(400) {
		t.Errorf("refusal lines = %v, want one with status 400", refused)
	}
	if strings.Contains(body, "nope-from-the-gateway") {
		t.Errorf("/metrics holds a value taken from a request")
	}
}

// TestHTTPShutdown checks the HTTP listener's part in a graceful shutdown:
// during the shutdown delay its health endpoint says 503 and checks are
// still answered; once Serve returns, it no longer accepts connections.
func TestHTTPShutdown(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{HTTPAddr: "127.0.0.1:0", ShutdownDelay: time.Second})
	addr := ts.Srv.HTTPAddr().String()
	health := func() int {
		resp, err := http.Get("http://" + addr + httpauthz.HealthPath)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := health(); got != 200 {
		t.Fatalf("health before shutdown = %d, want 200", got)
	}
	served := ts.Shutdown()
	th.WaitFor(t, "the HTTP health endpoint to say 503", func() bool { return health() == 503 })
	resp, _ := th.HTTPCheck(t, addr, &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: th.App}, true)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != th.App {
		t.Errorf("check during the shutdown delay = %d %v", resp.StatusCode, resp.Header)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := http.Get("http://" + addr + httpauthz.HealthPath); err == nil {
		t.Errorf("the HTTP listener still accepts connections after Serve returned")
	}
}

// TestHTTPTLS checks that the gRPC listener's TLS options apply to the
// HTTP listener: HTTPS with the same certificate, client certificates
// required when a client CA is given.
func TestHTTPTLS(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		HTTPAddr: "127.0.0.1:0",
		TLS:      &server.TLSOptions{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA},
	})
	url := "https://" + ts.Srv.HTTPAddr().String() + httpauthz.HealthPath
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.cert)
	client := func(certPEM, keyPEM []byte) *http.Client {
		cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if certPEM != nil {
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	resp, err := client(f.clientCert, f.clientKey).Get(url)
	if err != nil {
		t.Fatalf("HTTPS with a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("HTTPS health = %d (TLS %v), want 200 over TLS", resp.StatusCode, resp.TLS != nil)
	}
	if resp, err := client(nil, nil).Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("HTTPS without a client certificate answered %d, want the handshake refused", resp.StatusCode)
	}
	if resp, err := client(f.otherClient, f.otherClientKey).Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("HTTPS with an untrusted client certificate answered %d", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + ts.Srv.HTTPAddr().String() + httpauthz.HealthPath); err == nil && resp.StatusCode == 200 {
		resp.Body.Close()
		t.Errorf("plain HTTP answered 200 on the TLS listener")
	}
}

// TestHTTPListenerLogIsLimited floods the HTTPS listener with connections
// that are not TLS: net/http logs each, and the lines stay within the
// rate limit.
func TestHTTPListenerLogIsLimited(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	var logs th.LogBuffer
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
		HTTPAddr: "127.0.0.1:0", Logger: logs.Logger(slog.LevelInfo),
		TLS: &server.TLSOptions{CertFile: f.cert, KeyFile: f.key},
	})
	const floods = 3 * server.DefaultDecisionLogRate
	start := time.Now()
	for range floods {
		conn, err := net.Dial("tcp", ts.Srv.HTTPAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, conn) // until the server closes it
		conn.Close()
	}
	count := func() int {
		n := 0
		for _, rec := range logs.Records(t) {
			if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, "HTTP listener: ") {
				n++
			}
		}
		return n
	}
	th.WaitFor(t, "the listener's first log lines", func() bool { return count() > 0 })
	time.Sleep(100 * time.Millisecond) // the last lines
	// The bucket: a burst of one second's worth, refilled as time passes.
	limit := server.DefaultDecisionLogRate * (1 + time.Since(start).Seconds())
	if n := count(); float64(n) > limit+1 {
		t.Errorf("%d log lines for %d bad connections, want at most %.0f", n, floods, limit)
	}
	// The shared request log's line (internal/limits.RequestLog).
	if len(logs.WithMsg(t, "decision log lines suppressed by the rate limit")) == 0 {
		t.Errorf("no line says lines were suppressed")
	}
	// Each refused handshake is counted, as the gRPC listener's are.
	_, body := ts.Get(t, "/metrics")
	if got := th.Metric(body, "corsauthz_tls_handshake_failures_total"); got != floods {
		t.Errorf("corsauthz_tls_handshake_failures_total = %v, want %d", got, floods)
	}
}
