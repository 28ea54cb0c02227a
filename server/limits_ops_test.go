package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	th "github.com/corsauthz/corsauthz/internal/testharness"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcmd "google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/server"
)

// The smaller findings of issue 10.

// TestRemovedPolicySeriesDropped: in an earlier release the decision series of
// policies removed by a reload stayed for ever (51 series after 50
// reloads that each renamed the policy).
func TestRemovedPolicySeriesDropped(t *testing.T) {
	t.Parallel()
	config := func(i int) string {
		return fmt.Sprintf("policies:\n  - name: p%d\n    allowed_origins: [https://app.example.com]\n", i)
	}
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, config(0))), server.Options{})
	ctx := th.CtxTimeout(t)
	for i := range 51 {
		if i > 0 {
			if err := ts.Srv.Reload(ctx, "test.yaml", []byte(config(i))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ts.Authz().Check(ctx, th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, fmt.Sprintf("p%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	families, err := ts.Reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "corsauthz_decisions_total" {
			continue
		}
		if n := len(f.GetMetric()); n != 1 {
			t.Errorf("corsauthz_decisions_total has %d series after 50 reloads, want 1 (the policy in force)", n)
		}
		return
	}
	t.Error("no corsauthz_decisions_total")
}

// TestAdminNotLoopbackWarns: --admin-addr 0.0.0.0 puts /metrics on the
// network; the server says so at start (in an earlier release it did not).
func TestAdminNotLoopbackWarns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc, addr string
		warn       bool
	}{
		{desc: "all interfaces", addr: "0.0.0.0:0", warn: true},
		{desc: "loopback", addr: "127.0.0.1:0", warn: false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			var logs th.LogBuffer
			srv, err := server.New(policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
				GRPCAddr: "127.0.0.1:0", AdminAddr: tc.addr, Registry: prometheus.NewRegistry(), Logger: logs.Logger(slog.LevelInfo),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := srv.Serve(ctx); err != nil {
				t.Fatal(err)
			}
			got := logs.WithMsg(t, "the admin listener is not on loopback: /metrics, /healthz and /readyz can be reached from the network; bind --admin-addr to 127.0.0.1 unless that is intended, and restrict who can reach it")
			if (len(got) == 1) != tc.warn {
				t.Errorf("warnings: %v, want one: %v", got, tc.warn)
			}
		})
	}
}

// TestTLSExpiredCertificate: an expired certificate is refused at start,
// and a rotation to one is refused, logged and counted, the certificate in
// use kept (in an earlier release both were accepted silently).
func TestTLSExpiredCertificate(t *testing.T) {
	t.Parallel()
	files := newTLSFiles(t)
	expiredCert, expiredKey, _ := files.ca.issue(t, "expired", false, time.Now().Add(-time.Minute))
	t.Run("at start", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		cert, key := dir+"/tls.crt", dir+"/tls.key"
		replaceFile(t, cert, expiredCert)
		replaceFile(t, key, expiredKey)
		_, err := server.New(policy.NewHolder(nil), server.Options{
			GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Registry: prometheus.NewRegistry(),
			TLS: &server.TLSOptions{CertFile: cert, KeyFile: key},
		})
		if err == nil || !strings.Contains(err.Error(), "TLS certificate "+cert+" expired at ") {
			t.Errorf("New: %v, want the certificate refused as expired", err)
		}
	})
	t.Run("rotation", func(t *testing.T) {
		t.Parallel()
		var logs th.LogBuffer
		ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
			Logger: logs.Logger(slog.LevelInfo),
			TLS:    &server.TLSOptions{CertFile: files.cert, KeyFile: files.key, ReloadInterval: 10 * time.Millisecond},
		})
		addr := ts.Srv.GRPCAddr().String()
		first, err := dialTLS(t, addr, files.ca, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		replaceFile(t, files.key, expiredKey)
		replaceFile(t, files.cert, expiredCert)
		th.WaitFor(t, "the refused rotation to be counted", func() bool {
			_, _ = dialTLS(t, addr, files.ca, nil, nil)
			_, body := ts.Get(t, "/metrics")
			return th.Metric(body, `corsauthz_tls_certificate_reloads_total{result="failure"}`) == 1
		})
		if got, err := dialTLS(t, addr, files.ca, nil, nil); err != nil || got.Cmp(first) != 0 {
			t.Errorf("after the refused rotation: serial %v, %v; want the certificate in use, %v", got, err, first)
		}
		failed := logs.WithMsg(t, "TLS certificate reload failed: keeping the certificate in use")
		if len(failed) != 1 || !strings.Contains(failed[0]["error"].(string), "expired at") {
			t.Errorf("failure log: %v", failed)
		}
	})
}

// TestRefusedHandshakesAndMalformedMessagesCounted: in an earlier release neither was
// logged nor counted.
func TestRefusedHandshakesAndMalformedMessagesCounted(t *testing.T) {
	t.Parallel()
	t.Run("TLS handshakes", func(t *testing.T) {
		t.Parallel()
		files := newTLSFiles(t)
		var logs th.LogBuffer
		ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{
			Logger: logs.Logger(slog.LevelInfo),
			TLS:    &server.TLSOptions{CertFile: files.cert, KeyFile: files.key, ClientCAFile: files.clientCA},
		})
		addr := ts.Srv.GRPCAddr().String()
		const attempts = 3
		for range attempts {
			if _, err := dialTLS(t, addr, files.ca, files.otherClient, files.otherClientKey); err == nil {
				t.Fatal("a client certificate of an untrusted CA was accepted")
			}
		}
		if _, err := healthCheck(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
			t.Fatal("a plaintext client was served")
		}
		// The counter and the log line are written one after the other by
		// the handshake's goroutine, so wait for both.
		th.WaitFor(t, "the refused handshakes to be counted and logged", func() bool {
			_, body := ts.Get(t, "/metrics")
			return th.Metric(body, "corsauthz_tls_handshake_failures_total") >= attempts+1 &&
				len(logs.WithMsg(t, "TLS handshake refused")) >= attempts+1
		})
	})
	t.Run("malformed messages", func(t *testing.T) {
		t.Parallel()
		var logs th.LogBuffer
		ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{Logger: logs.Logger(slog.LevelInfo)})
		ctx := th.CtxTimeout(t)
		for _, in := range [][]byte{{0x0c}, {0x0a, 0x05}, append([]byte{0x0a, 0xff, 0xff, 0x03}, make([]byte, 20<<10)...)} {
			if _, err := th.RawCheck(ctx, ts.Conn, in); status.Code(err) != codes.Internal {
				t.Fatalf("input %x: %v, want Internal", in[:min(len(in), 8)], err)
			}
		}
		_, body := ts.Get(t, "/metrics")
		if got := th.Metric(body, "corsauthz_malformed_messages_total"); got != 3 {
			t.Errorf("corsauthz_malformed_messages_total = %v, want 3", got)
		}
		if got := logs.WithMsg(t, "malformed request message"); len(got) != 3 {
			t.Errorf("%d malformed messages logged, want 3", len(got))
		}
	})
}

// TestRefusedReloadLogBounded: values from a file reach the log cut, and a
// file of a thousand problems logs a bounded number of lines (on
// an earlier release, one line each, and a 1,000-byte key in full).
func TestRefusedReloadLogBounded(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("policies:\n  - name: api\n    allowed_origins:\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "      - https://%d%s.example.com/path\n", i, strings.Repeat("a", 300))
	}
	b.WriteString("    " + strings.Repeat("k", 1000) + ": true\n")
	var logs th.LogBuffer
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{Logger: logs.Logger(slog.LevelInfo)})
	if err := ts.Srv.Reload(th.CtxTimeout(t), "big.yaml", []byte(b.String())); err == nil {
		t.Fatal("the invalid configuration was accepted")
	}
	text := logs.String()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) > 110 {
		t.Errorf("a refused reload logged %d lines, want at most about 100", len(lines))
	}
	for _, line := range lines {
		if len(line) > maxLineLen {
			t.Fatalf("a log line is %d bytes: %.300s", len(line), line)
		}
	}
	if got := logs.WithMsg(t, "invalid configuration: more problems not logged (corsauthz validate lists them all)"); len(got) != 1 {
		t.Errorf("no line says problems were left out: %v", got)
	}
	t.Logf("%d bytes of configuration: %d log lines, %d bytes", b.Len(), len(lines), len(text))
}

// TestMetadataBounded: a call's metadata is bounded (gRPC's default is
// 16 MiB a call, which an earlier release kept).
func TestMetadataBounded(t *testing.T) {
	t.Parallel()
	ts := th.StartServer(t, policy.NewHolder(th.LoadEngine(t, th.Config)), server.Options{})
	req := th.CheckRequest("GET", "api.example.com", "/", th.Hdrs{"origin": th.App}, "")
	for _, tc := range []struct {
		desc string
		size int
		ok   bool
	}{
		{desc: "a few KiB", size: 4 << 10, ok: true},
		{desc: "1 MiB", size: 1 << 20, ok: false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ctx := grpcmd.AppendToOutgoingContext(th.CtxTimeout(t), "x-big", strings.Repeat("m", tc.size))
			_, err := ts.Authz().Check(ctx, req)
			if (err == nil) != tc.ok {
				t.Errorf("Check with %d bytes of metadata: %v, want ok=%v", tc.size, err, tc.ok)
			}
		})
	}
}
