package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/corsauthz/corsauthz/internal/childproc"
)

func opsConfig(origin string) []byte {
	return []byte("policies:\n  - name: api\n    match:\n      hosts: [api.example.com]\n    allowed_origins: [" + origin + "]\n    allowed_methods: [PUT]\n")
}

// jsonLog collects a child's JSON log lines and lets a test wait for one.
type jsonLog struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   strings.Builder
}

func (l *jsonLog) read(r *os.File) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var rec map[string]any
		_ = json.Unmarshal(sc.Bytes(), &rec)
		l.mu.Lock()
		l.lines = append(l.lines, rec)
		l.raw.WriteString(sc.Text() + "\n")
		l.mu.Unlock()
	}
}

// waitMsg waits up to 10s for a line whose msg is msg, and returns it.
func (l *jsonLog) waitMsg(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, rec := range l.lines {
			if rec["msg"] == msg {
				l.mu.Unlock()
				return rec
			}
		}
		l.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no log line %q within 10s:\n%s", msg, l.String())
	return nil
}

// servingAddr is the address the "serving" line rec names for key
// (grpc_addr, admin_addr, http_addr): the tests listen on port 0, as a
// port found free and closed again can be taken by another test first.
func servingAddr(t *testing.T, rec map[string]any, key string) string {
	t.Helper()
	addr, _ := rec[key].(string)
	if addr == "" {
		t.Fatalf("the serving line has no %s: %v", key, rec)
	}
	return addr
}

func (l *jsonLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw.String()
}

// TestBinaryReloadAndShutdownUnderLoad runs the built binary on a
// configuration file under load: SIGHUP rereads the file, a rewritten file
// is put in force, and SIGTERM turns health NOT_SERVING, lets the clients
// notice during --shutdown-delay, finishes every call and exits 0.
func TestBinaryReloadAndShutdownUnderLoad(t *testing.T) {
	bin := buildBinary(t)
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, opsConfig("https://a.example.com"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", config, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--http-addr", "",
		"--log-format", "json", "--shutdown-delay", "500ms", "--drain-timeout", "5s")
	cmd.Env = os.Environ()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = pw
	if err := childproc.Start(t, cmd); err != nil {
		t.Fatal(err)
	}
	// A failing test must not leave the server running.
	t.Cleanup(func() { cmd.Process.Kill() })
	pw.Close()
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()
	var log jsonLog
	go log.read(pr)
	serving := log.waitMsg(t, "serving")
	grpcAddr := servingAddr(t, serving, "grpc_addr")

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Health is watched as a gateway or load balancer would.
	watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch: %v, %v; want SERVING", resp, err)
	}
	var notServing atomic.Bool
	notServingAt := make(chan time.Time, 1)
	go func() {
		for {
			resp, err := watch.Recv()
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				if err == nil {
					notServingAt <- time.Now()
				} else {
					notServingAt <- time.Time{}
				}
				notServing.Store(true)
				return
			}
		}
	}()

	preflight := func(origin string) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "OPTIONS", Host: "api.example.com", Path: "/",
			Headers: map[string]string{"origin": origin, "access-control-request-method": "PUT"},
		}}}}
	}
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	const workers = 8
	for range workers {
		wg.Go(func() {
			client := authv3.NewAuthorizationClient(conn)
			for !notServing.Load() {
				sent.Add(1)
				if _, err := client.Check(ctx, preflight("https://a.example.com")); err != nil {
					failed.Add(1)
					t.Errorf("Check: %v", err)
					return
				}
			}
		})
	}

	// SIGHUP rereads the file, unchanged here.
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	log.waitMsg(t, "SIGHUP: reloading the configuration")
	log.waitMsg(t, "configuration unchanged: nothing to reload")

	// A rewritten file is put in force.
	tmp := config + ".tmp"
	os.WriteFile(tmp, opsConfig("https://b.example.com"), 0o644)
	if err := os.Rename(tmp, config); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	client := authv3.NewAuthorizationClient(conn)
	for {
		resp, err := client.Check(ctx, preflight("https://b.example.com"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetDeniedResponse().GetStatus().GetCode() == 204 {
			break
		}
		if time.Since(written) > 2*time.Second {
			t.Fatal("the rewritten configuration is not in force 2s after it was written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	reloadLatency := time.Since(written)

	// SIGTERM under load.
	time.Sleep(200 * time.Millisecond)
	termAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not exit 15s after SIGTERM:\n%s", log.String())
	}
	exitAt := time.Now()
	wg.Wait()
	sawNotServing := <-notServingAt
	t.Logf("%d Checks from %d goroutines, %d failed; reload in force after %v; NOT_SERVING seen %v after SIGTERM, exit after %v",
		sent.Load(), workers, failed.Load(), reloadLatency.Round(time.Millisecond),
		sawNotServing.Sub(termAt).Round(time.Millisecond), exitAt.Sub(termAt).Round(time.Millisecond))
	if waitErr != nil {
		t.Errorf("exit after SIGTERM: %v, want 0\n%s", waitErr, log.String())
	}
	if sawNotServing.IsZero() || !sawNotServing.Before(exitAt) {
		t.Errorf("NOT_SERVING not seen before the process exited (seen at %v, exit at %v)", sawNotServing, exitAt)
	}
	if failed.Load() != 0 {
		t.Errorf("%d of %d Checks failed", failed.Load(), sent.Load())
	}
}
