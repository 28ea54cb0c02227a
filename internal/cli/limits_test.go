package cli_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/corsauthz/corsauthz/internal/configwatch"
)

// Finding 3 and the smaller ones of issue 10: a FIFO as --config blocked
// validate and serve forever (and made them ignore SIGTERM); nothing
// bounded a file's size.

// mkfifo makes a named pipe in a test directory.
func mkfifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fifo.yaml")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return path
}

// runWithin runs the command, failing the test when it takes more than d.
func runWithin(t *testing.T, d time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan result, 1)
	go func() { done <- runCtx(t, ctx, nil, args...) }()
	select {
	case r := <-done:
		return r
	case <-time.After(d):
		cancel()
		t.Fatalf("%v still running after %v", args, d)
		return result{}
	}
}

func TestConfigFileRefusedAtOnce(t *testing.T) {
	t.Parallel()
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte(reloadConfig(originA)), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := mkfifo(t)
	for _, tc := range []struct {
		desc  string
		flags []string
		want  string
	}{
		{desc: "a FIFO", flags: []string{"--config", fifo}, want: "is a named pipe (FIFO), not a regular file"},
		{desc: "a character device", flags: []string{"--config", "/dev/zero"}, want: "/dev/zero is a character device, not a regular file"},
		{desc: "a directory", flags: []string{"--config", t.TempDir()}, want: "is a directory, not a regular file"},
		{desc: "past --max-config-bytes", flags: []string{"--config", big, "--max-config-bytes", "100"}, want: "more than the limit of 100 bytes (--max-config-bytes)"},
	} {
		for _, cmd := range []string{"validate", "serve"} {
			t.Run(cmd+" "+tc.desc, func(t *testing.T) {
				t.Parallel()
				args := append([]string{cmd}, tc.flags...)
				if cmd == "serve" {
					args = append(args, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
				}
				r := runWithin(t, time.Second, args...)
				if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("exit %d, stderr %q; want 1 and %q", r.code, r.stderr, tc.want)
				}
			})
		}
	}
}

// TestServeStopsWhileLoading: SIGTERM (here, serve's context cancelled)
// while the configuration is being loaded stops serve at once, without
// serving: before this check it finished loading, then served and shut down.
func TestServeStopsWhileLoading(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("policies:\n  - name: big\n    allowed_origins:\n")
	for i := range 50_000 {
		fmt.Fprintf(&b, "      - https://o%d.example.com\n", i)
	}
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := runCtx(t, ctx, nil, "serve", "--config", path, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if r.code != 1 || !strings.Contains(r.stderr, "stopped while loading the configuration") || strings.Contains(r.stderr, "serving") {
		t.Errorf("exit %d, stderr:\n%s\nwant 1, stopped while loading, never serving", r.code, r.stderr)
	}
}

// TestReloadRefusedPastLimits: a reload of a file past a limit (an alias
// bomb, a FIFO renamed over the file, a file too large) is refused like
// any invalid file: logged, counted, the configuration in force kept, the
// process alive, and the next good file loaded. Before, a FIFO froze
// the watcher with corsauthz_config_last_reload_successful still 1.
func TestReloadRefusedPastLimits(t *testing.T) {
	t.Parallel()
	w := &renamer{file: filepath.Join(t.TempDir(), "config.yaml")}
	w.write(t, reloadConfig(originA))
	s := serve(t, "--config", w.path(), "--max-config-bytes", "80000", "--config-check-interval", "100ms")
	client := authv3.NewAuthorizationClient(s.conn)
	check := func(want string) {
		t.Helper()
		resp, err := client.Check(context.Background(), preflight(originA))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if got := answer(originA, resp); got != want {
			t.Fatalf("answered by %s, want %s", got, want)
		}
	}
	failures := func() float64 {
		return metricValue(s.metrics(t), `corsauthz_config_reloads_total{result="failure"}`)
	}
	waitFailures := func(n float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for failures() < n {
			if time.Now().After(deadline) {
				t.Fatalf("reload failures = %v, want %v", failures(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if v := metricValue(s.metrics(t), "corsauthz_config_last_reload_successful"); v != 0 {
			t.Fatalf("last_reload_successful = %v, want 0", v)
		}
		check("A")
	}

	var bomb strings.Builder
	bomb.WriteString("x: &o\n")
	for i := range 1000 {
		fmt.Fprintf(&bomb, "  - https://o%d.example.com\n", i)
	}
	bomb.WriteString("policies:\n")
	for i := range 1000 {
		fmt.Fprintf(&bomb, "  - {name: p%d, allowed_origins: *o}\n", i)
	}
	w.write(t, bomb.String())
	waitFailures(1)

	fifo := w.path() + ".fifo"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, w.path()); err != nil {
		t.Fatal(err)
	}
	waitFailures(2)

	w.write(t, reloadConfig(originA)+strings.Repeat("# padding\n", 10_000))
	waitFailures(3)

	w.write(t, reloadConfig(originB))
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := client.Check(context.Background(), preflight(originA))
		if err == nil && answer(originA, resp) == "B" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("configuration B never in force after the refused reloads: %v %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := s.stop(t)
	for _, want := range []string{"policy.MaxYAMLNodes", "named pipe (FIFO)", "(--max-config-bytes)"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the log does not say %q:\n%.3000s", want, r.stderr)
		}
	}
}

// TestInPlaceWritesNeverServedHalfWritten: a configuration rewritten in
// place (truncated, then written in two parts with a pause shorter than
// the debounce period), again and again under load, is never served half
// written. Every complete file rejects disallowed origins with a 403; the
// first half of each is a valid configuration that does not, as in the
// issue (before, such a file was served for thousands of decisions).
func TestInPlaceWritesNeverServedHalfWritten(t *testing.T) {
	t.Parallel()
	complete := func(version int) (first, rest string) {
		head := fmt.Sprintf("# version %d\n", version) + `policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [https://a.example.com]
    allowed_methods: [PUT]
`
		padding := strings.Repeat("# padding, so that the write takes two parts\n", 40)
		return head + padding[:len(padding)/2], padding[len(padding)/2:] + "    reject_disallowed_origins: true\n"
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	first, rest := complete(0)
	if err := os.WriteFile(path, []byte(first+rest), 0o600); err != nil {
		t.Fatal(err)
	}
	// A short interval, so that the watch looks at the file often, in the
	// middle of writes too.
	s := serve(t, "--config", path, "--config-check-interval", "20ms")
	actual := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: "/",
			Headers: map[string]string{"origin": originC},
		},
	}}}
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	var sent, halfServed atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			client := authv3.NewAuthorizationClient(s.conn)
			for ctx.Err() == nil {
				resp, err := client.Check(ctx, actual)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					t.Errorf("Check: %v", err)
					return
				}
				sent.Add(1)
				if resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
					halfServed.Add(1)
				}
			}
		})
	}
	writes := soak(15)
	var maxPause time.Duration
	for v := 1; v <= writes; v++ {
		first, rest := complete(v)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(first); err != nil {
			t.Fatal(err)
		}
		paused := time.Now()
		time.Sleep(30 * time.Millisecond) // less than the 100 ms debounce
		maxPause = max(maxPause, time.Since(paused))
		if _, err := f.WriteString(rest); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	body := s.metrics(t)
	reloads := metricValue(body, `corsauthz_config_reloads_total{result="success"}`)
	s.stop(t)
	t.Logf("%d in-place writes (longest pause mid-write %v), %v reloads, %d Checks, %d answered from a half-written file",
		writes, maxPause.Round(time.Millisecond), reloads, sent.Load(), halfServed.Load())
	if halfServed.Load() != 0 && maxPause >= configwatch.DefaultDebounce {
		// The documented limit: a writer that pauses longer than the
		// debounce period can be read half-way. A loaded machine made
		// this one do so; TestStableBeforeHandover in configwatch checks
		// the same with a margin no load reaches.
		t.Skipf("inconclusive: the writer paused %v mid-write, more than the debounce period", maxPause)
	}
	if halfServed.Load() != 0 {
		t.Errorf("%d of %d Checks were answered from a half-written file", halfServed.Load(), sent.Load())
	}
	if reloads < float64(writes)/4 {
		t.Errorf("%v reloads for %d writes: the complete files were not loaded", reloads, writes)
	}
}
