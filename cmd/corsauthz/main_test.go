package main_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/corsauthz/corsauthz/internal/childproc"
)

// Link-time version and revision, as the Dockerfile sets them: a wrong
// variable path in -X is silently ignored, so the tests build with them.
const (
	testVersion  = "v0.0.0-test"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
	ldflags      = "-X github.com/corsauthz/corsauthz/internal/cli.version=" + testVersion +
		" -X github.com/corsauthz/corsauthz/internal/cli.revision=" + testRevision
)

// buildBinary builds the real corsauthz binary once for the tests here,
// with the version and revision set as the Dockerfile sets them.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "corsauthz")
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, ".")
	if out, err := childproc.CombinedOutput(t, cmd); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// servingLine is the text log's "serving" line, naming the addresses bound.
var servingLine = regexp.MustCompile(`msg=serving grpc_addr=(\S+) admin_addr=(\S+) http_addr=(\S+)`)

// TestBinary runs the built binary as an operator would: validate's exit
// codes, and serve answering Check until SIGTERM, then exiting 0.
func TestBinary(t *testing.T) {
	bin := buildBinary(t)

	t.Run("validate exit codes", func(t *testing.T) {
		good := filepath.Join(t.TempDir(), "good.yaml")
		bad := filepath.Join(t.TempDir(), "bad.yaml")
		os.WriteFile(good, []byte("policies:\n  - name: a\n    allowed_origins: [https://app.example.com]\n"), 0o600)
		os.WriteFile(bad, []byte("policies:\n  - name: a\n    allowed_origins: [https://app.example.com/]\n"), 0o600)
		if out, err := childproc.CombinedOutput(t, exec.Command(bin, "validate", "--config", good)); err != nil {
			t.Errorf("validate good: %v\n%s", err, out)
		}
		out, err := childproc.CombinedOutput(t, exec.Command(bin, "validate", "--config", bad))
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("validate bad: err = %v, want exit status 1", err)
		}
		want := bad + `:3:23: policies[0].allowed_origins[0]: origin "https://app.example.com/" has a trailing slash, which browsers never send: did you mean "https://app.example.com"?` + "\n"
		if string(out) != want {
			t.Errorf("validate bad printed %q, want %q", out, want)
		}
	})

	t.Run("version from -ldflags", func(t *testing.T) {
		out, err := childproc.CombinedOutput(t, exec.Command(bin, "version"))
		want := "corsauthz " + testVersion + " (revision " + testRevision + ") "
		if err != nil || !strings.HasPrefix(string(out), want) {
			t.Errorf("version: %v, printed %q; want it to start %q", err, out, want)
		}
	})

	t.Run("serve until SIGTERM", func(t *testing.T) {
		// Port 0: the addresses are read from the serving line.
		cmd := exec.Command(bin, "serve")
		cmd.Env = append(os.Environ(), "CORSAUTHZ_GRPC_ADDR=127.0.0.1:0", "CORSAUTHZ_ADMIN_ADDR=127.0.0.1:0", "CORSAUTHZ_HTTP_ADDR=127.0.0.1:0")
		var grpcAddr, httpAddr string
		var stderr lockedBuffer
		pr, pw, _ := os.Pipe()
		cmd.Stderr = pw
		if err := childproc.Start(t, cmd); err != nil {
			t.Fatal(err)
		}
		// A failing test must not leave the server running.
		t.Cleanup(func() { cmd.Process.Kill() })
		pw.Close()
		ready := make(chan struct{})
		go func() {
			var once sync.Once
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				stderr.WriteString(sc.Text() + "\n")
				if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
					once.Do(func() {
						grpcAddr, httpAddr = m[1], m[3]
						close(ready)
					})
				}
			}
		}()
		select {
		case <-ready:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("serve never logged that it was serving:\n%s", stderr.String())
		}

		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{
			Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "OPTIONS", Host: "api.example.com", Path: "/v1/orders",
				Headers: map[string]string{
					"origin":                        "https://app.example.com",
					"access-control-request-method": "PUT",
				},
			}}},
		})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if got := resp.GetDeniedResponse().GetStatus().GetCode(); resp.GetStatus().GetCode() != int32(codes.PermissionDenied) || got != 204 {
			t.Errorf("preflight answered %v / %d, want PERMISSION_DENIED / 204", resp.GetStatus(), got)
		}

		// The same preflight as NGINX's auth_request describes it, over HTTP.
		hreq, _ := http.NewRequestWithContext(ctx, "GET", "http://"+httpAddr+"/check", nil)
		hreq.Header.Set("X-Original-Method", "OPTIONS")
		hreq.Header.Set("X-Original-Host", "api.example.com")
		hreq.Header.Set("X-Original-URI", "/v1/orders")
		hreq.Header.Set("Origin", "https://app.example.com")
		hreq.Header.Set("Access-Control-Request-Method", "PUT")
		hresp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatalf("HTTP check: %v", err)
		}
		hresp.Body.Close()
		if hresp.StatusCode != 204 || hresp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
			t.Errorf("HTTP preflight answered %d %v, want 204 with the origin allowed", hresp.StatusCode, hresp.Header)
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatal("serve did not exit after SIGTERM")
		}
	})
}

// lockedBuffer collects a child's log from one goroutine while the test
// reads it from another.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
