package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/corsauthz/corsauthz/httpauthz"
	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
	"github.com/corsauthz/corsauthz/server"
)

// httpCheck describes req to the HTTP listener as a gateway would: with
// NGINX's X-Original-* headers when nginxStyle, else as Envoy's
// http_service (the request's own method, Host and path).
func httpCheck(t *testing.T, addr string, req *corsauthzv1.DecideRequest, nginxStyle bool) (*http.Response, string) {
	t.Helper()
	method, target := req.Method, req.Path
	hreq, err := http.NewRequestWithContext(ctxTimeout(t), method, "http://"+addr+"/", nil)
	if nginxStyle {
		method, target = "GET", "/check"
		hreq, err = http.NewRequestWithContext(ctxTimeout(t), method, "http://"+addr+target, nil)
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

// fromHTTP is what a gateway does with the HTTP listener's answer, in the
// terms of the decision API: Access-Control-* replace the upstream's, Vary
// is appended to it.
func fromHTTP(t *testing.T, resp *http.Response, body string) answer {
	t.Helper()
	switch resp.StatusCode {
	case 200:
		a := answer{action: corsauthzv1.Action_ACTION_CONTINUE}
		a.headers = httpHeaders(t, resp)
		return a
	case 204, 403:
		return answer{action: corsauthzv1.Action_ACTION_RESPOND, status: int32(resp.StatusCode), headers: httpHeaders(t, resp)}
	case 431, 400:
		return answer{code: codes.InvalidArgument}
	case 503:
		if strings.Contains(body, "X-Corsauthz-Policy names no configured policy") {
			return answer{code: codes.FailedPrecondition}
		}
		return answer{code: codes.Unavailable}
	}
	t.Errorf("HTTP status %d (%q)", resp.StatusCode, body)
	return answer{}
}

func httpHeaders(t *testing.T, resp *http.Response) []string {
	var out []string
	for name, vs := range resp.Header {
		if !strings.HasPrefix(name, "Access-Control-") && name != "Vary" {
			continue
		}
		if len(vs) != 1 {
			t.Errorf("%s on %d lines, want one", name, len(vs))
		}
		action := "replace"
		if name == "Vary" {
			action = "append"
		}
		for _, v := range vs {
			out = append(out, name+": "+v+" ("+action+")")
		}
	}
	slices.Sort(out)
	return out
}

// TestHTTPAgreesWithCheck asks the HTTP listener, described both as NGINX
// and as Envoy's http_service describe a request, what Check answers on
// the same table of requests: the decision and headers must be the same.
func TestHTTPAgreesWithCheck(t *testing.T) {
	t.Parallel()
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{HTTPAddr: "127.0.0.1:0"})
	addr := ts.srv.HTTPAddr().String()
	for _, tt := range sameDecisionCases {
		t.Run(tt.desc, func(t *testing.T) {
			t.Parallel()
			fromC := fromCheck(ts.authz().Check(ctxTimeout(t), asCheckRequest(tt.req)))
			slices.Sort(fromC.headers)
			for _, nginxStyle := range []bool{true, false} {
				resp, body := httpCheck(t, addr, tt.req, nginxStyle)
				fromH := fromHTTP(t, resp, body)
				if fromC.code != fromH.code || fromC.action != fromH.action || fromC.status != fromH.status ||
					strings.Join(fromC.headers, "\n") != strings.Join(fromH.headers, "\n") {
					t.Errorf("nginx style %t:\nCheck: %+v\nHTTP:  %+v", nginxStyle, fromC, fromH)
				}
			}
		})
	}
}

// TestHTTPMetricsAndLogs checks that the HTTP listener's requests are
// counted with front_end="http", beside the ext_authz ones, and that its
// refusals are logged without the values sent.
func TestHTTPMetricsAndLogs(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{
		HTTPAddr: "127.0.0.1:0", Logger: logs.logger(slog.LevelDebug),
	})
	addr := ts.srv.HTTPAddr().String()
	allowed := &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: app}
	httpCheck(t, addr, allowed, true)
	httpCheck(t, addr, allowed, false)
	httpCheck(t, addr, &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: app, Policy: "nope-from-the-gateway"}, true)
	httpCheck(t, addr, &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: "https://\xffsecret.example"}, true)
	_, _ = ts.authz().Check(ctxTimeout(t), asCheckRequest(allowed))

	_, body := ts.get(t, "/metrics")
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
		if got := metric(body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if n := len(logs.withMsg(t, "cors decision")); n != 3 {
		t.Errorf("%d decision lines, want 3 (2 over HTTP, 1 over gRPC)", n)
	}
	refused := logs.withMsg(t, "http check refused: unreadable request")
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
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{HTTPAddr: "127.0.0.1:0", ShutdownDelay: time.Second})
	addr := ts.srv.HTTPAddr().String()
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
	served := ts.shutdown()
	waitFor(t, "the HTTP health endpoint to say 503", func() bool { return health() == 503 })
	resp, _ := httpCheck(t, addr, &corsauthzv1.DecideRequest{Method: "GET", Host: "api.example.com", Path: "/", Origin: app}, true)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != app {
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
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{
		HTTPAddr: "127.0.0.1:0",
		TLS:      &server.TLSOptions{CertFile: f.cert, KeyFile: f.key, ClientCAFile: f.clientCA},
	})
	url := "https://" + ts.srv.HTTPAddr().String() + httpauthz.HealthPath
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
	if resp, err := http.Get("http://" + ts.srv.HTTPAddr().String() + httpauthz.HealthPath); err == nil && resp.StatusCode == 200 {
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
	var logs logBuffer
	ts := startServer(t, policy.NewHolder(loadEngine(t, testConfig)), server.Options{
		HTTPAddr: "127.0.0.1:0", Logger: logs.logger(slog.LevelInfo),
		TLS: &server.TLSOptions{CertFile: f.cert, KeyFile: f.key},
	})
	const floods = 3 * server.DefaultDecisionLogRate
	start := time.Now()
	for range floods {
		conn, err := net.Dial("tcp", ts.srv.HTTPAddr().String())
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
		for _, rec := range logs.records(t) {
			if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, "HTTP listener: ") {
				n++
			}
		}
		return n
	}
	waitFor(t, "the listener's first log lines", func() bool { return count() > 0 })
	time.Sleep(100 * time.Millisecond) // the last lines
	// The bucket: a burst of one second's worth, refilled as time passes.
	limit := server.DefaultDecisionLogRate * (1 + time.Since(start).Seconds())
	if n := count(); float64(n) > limit+1 {
		t.Errorf("%d log lines for %d bad connections, want at most %.0f", n, floods, limit)
	}
	// The shared request log's line (internal/limits.RequestLog).
	if len(logs.withMsg(t, "decision log lines suppressed by the rate limit")) == 0 {
		t.Errorf("no line says lines were suppressed")
	}
	// Each refused handshake is counted, as the gRPC listener's are.
	_, body := ts.get(t, "/metrics")
	if got := metric(body, "corsauthz_tls_handshake_failures_total"); got != floods {
		t.Errorf("corsauthz_tls_handshake_failures_total = %v, want %d", got, floods)
	}
}
