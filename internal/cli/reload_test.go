package cli_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/corsauthz/corsauthz/internal/freeport"
)

// soak reports whether the long versions of the load tests were asked for
// (CORSAUTHZ_SOAK=1), and scales n accordingly.
func soak(n int) int {
	if os.Getenv("CORSAUTHZ_SOAK") == "1" {
		return 10 * n
	}
	return n
}

// reloadConfig is a configuration whose one policy allows origin only.
func reloadConfig(origin string) string {
	return fmt.Sprintf(`policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [%s]
    allowed_methods: [PUT]
`, origin)
}

// invalidConfig would allow https://c.example.com, were it valid; version
// makes each one different.
func invalidConfig(version int) string {
	return fmt.Sprintf(`policies:
  - name: api
    match:
      hosts: [api.example.com]
    allowed_origins: [https://c.example.com, https://c.example.com/]
    allowed_methods: [PUT]
    max_age_seconds: -%d
`, version+1)
}

const (
	originA = "https://a.example.com" // allowed by configuration A only
	originB = "https://b.example.com" // allowed by configuration B only
	originC = "https://c.example.com" // allowed by no valid configuration
)

func preflight(origin string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Method: "OPTIONS", Host: "api.example.com", Path: "/v1/x",
			Headers: map[string]string{"origin": origin, "access-control-request-method": "PUT"},
		},
	}}}
}

// answer is which configuration a preflight's answer comes from.
func answer(origin string, resp *authv3.CheckResponse) string {
	allowed := resp.GetDeniedResponse().GetStatus().GetCode() == 204
	switch {
	case resp.GetDeniedResponse() == nil:
		return "not a preflight answer"
	case origin == originC && !allowed:
		return "A or B"
	case origin == originC:
		return "invalid"
	case origin == originA && allowed, origin == originB && !allowed:
		return "A"
	default:
		return "B"
	}
}

// serving is `corsauthz serve` run in process until the test ends.
type serving struct {
	grpcAddr, adminAddr string
	conn                *grpc.ClientConn
	cancel              context.CancelFunc
	done                chan result
}

func serve(t *testing.T, args ...string) *serving {
	t.Helper()
	s := &serving{grpcAddr: freeport.Addr(t), adminAddr: freeport.Addr(t), done: make(chan result, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	t.Cleanup(cancel) // when the test fails before stop
	args = append([]string{"serve", "--grpc-addr", s.grpcAddr, "--admin-addr", s.adminAddr, "--http-addr", "127.0.0.1:0"}, args...)
	go func() { s.done <- runCtx(t, ctx, nil, args...) }()
	var err error
	if s.conn, err = grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		t.Fatal(err)
	}
	health := healthpb.NewHealthClient(s.conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve never became SERVING: %v\n%s", err, (<-s.done).stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// stop cancels serve and returns its result.
func (s *serving) stop(t *testing.T) result {
	t.Helper()
	s.conn.Close()
	s.cancel()
	select {
	case r := <-s.done:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return after cancellation")
		return result{}
	}
}

// metrics returns the admin listener's /metrics.
func (s *serving) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + s.adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func metricValue(body, series string) float64 {
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return -1
}

// writer rewrites the configuration file one way or another.
type writer interface {
	path() string
	write(t *testing.T, content string)
}

// renamer writes a temporary file and renames it over the configuration.
type renamer struct{ file string }

func (r *renamer) path() string { return r.file }

func (r *renamer) write(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(r.file+".tmp", []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(r.file+".tmp", r.file); err != nil {
		t.Fatal(err)
	}
}

// configMap updates the file as the kubelet updates a mounted ConfigMap:
// config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>, swapped by
// renaming a new ..data symlink over the old one.
type configMap struct {
	dir     string
	version int
}

func (c *configMap) path() string { return filepath.Join(c.dir, "config.yaml") }

func (c *configMap) write(t *testing.T, content string) {
	t.Helper()
	c.version++
	ts := fmt.Sprintf("..2026_01_01_00_%02d_%02d.%d", c.version/60%60, c.version%60, c.version)
	if err := os.Mkdir(filepath.Join(c.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, ts, "config.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(c.dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(c.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(c.dir, "..data_tmp"), filepath.Join(c.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old == "" {
		if err := os.Symlink(filepath.Join("..data", "config.yaml"), c.path()); err != nil {
			t.Fatal(err)
		}
	} else if err := os.RemoveAll(filepath.Join(c.dir, old)); err != nil {
		t.Fatal(err)
	}
}

// TestReloadUnderLoad runs serve on a configuration file that is rewritten
// again and again, alternating valid configurations that answer
// differently with invalid ones, while Checks are sent from many
// goroutines over gRPC. No Check fails; every answer is one of the two
// valid configurations'; each valid one is in force within two seconds of
// being written; the invalid ones never are, and the metrics say the last
// reload failed.
func TestReloadUnderLoad(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tc := range []struct {
		desc   string
		writes int
		writer func(dir string) writer
	}{
		{"temporary file renamed over the configuration", soak(100), func(dir string) writer {
			return &renamer{file: filepath.Join(dir, "config.yaml")}
		}},
		{"Kubernetes ConfigMap symlink swap", soak(100), func(dir string) writer {
			return &configMap{dir: dir}
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			testReloadUnderLoad(t, tc.writer(t.TempDir()), tc.writes)
		})
	}
}

func testReloadUnderLoad(t *testing.T, w writer, writes int) {
	configs := map[string]string{"A": reloadConfig(originA), "B": reloadConfig(originB)}
	w.write(t, configs["A"])
	s := serve(t, "--config", w.path())

	// Load: workers send preflights from the three origins, each answer
	// checked against the two valid configurations.
	ctx, stopLoad := context.WithCancel(context.Background())
	var sent, failed atomic.Int64
	var wg sync.WaitGroup
	defer func() { stopLoad(); wg.Wait() }() // also when the test fails early
	const workers = 6
	for i := range workers {
		wg.Go(func() {
			client := authv3.NewAuthorizationClient(s.conn)
			origins := []string{originA, originB, originC}
			for n := i; ctx.Err() == nil; n++ {
				origin := origins[n%len(origins)]
				resp, err := client.Check(ctx, preflight(origin))
				if ctx.Err() != nil {
					return
				}
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					t.Errorf("Check: %v", err)
					continue
				}
				if got := answer(origin, resp); got != "A" && got != "B" && got != "A or B" {
					failed.Add(1)
					t.Errorf("preflight from %s answered by %s: %v", origin, got, resp)
				}
			}
		})
	}

	// inForce probes until the answers are those of configuration want,
	// and returns how long that took.
	probe := authv3.NewAuthorizationClient(s.conn)
	inForce := func(want string, since time.Time) time.Duration {
		t.Helper()
		for {
			a, errA := probe.Check(ctx, preflight(originA))
			b, errB := probe.Check(ctx, preflight(originB))
			if errA != nil || errB != nil {
				t.Fatalf("probe: %v, %v", errA, errB)
			}
			if answer(originA, a) == want && answer(originB, b) == want {
				return time.Since(since)
			}
			if time.Since(since) > 2*time.Second {
				t.Fatalf("configuration %s not in force 2s after it was written", want)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	// failures waits until the metrics count n failed reloads.
	failures := func(n int, since time.Time) string {
		t.Helper()
		for {
			body := s.metrics(t)
			if metricValue(body, `corsauthz_config_reloads_total{result="failure"}`) == float64(n) {
				// A scrape gathers the metrics concurrently, so the one
				// that saw the new count may have read the gauge just
				// before the reload set it: the next scrape sees both.
				return s.metrics(t)
			}
			if time.Since(since) > 2*time.Second {
				t.Fatalf("failed reload %d not counted 2s after the invalid file was written", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	var latencies []time.Duration
	current, valid, invalid := "A", 0, 0
	for i := range writes {
		if i%2 == 0 {
			next := map[string]string{"A": "B", "B": "A"}[current]
			start := time.Now()
			w.write(t, configs[next])
			latencies = append(latencies, inForce(next, start))
			current = next
			valid++
			continue
		}
		start := time.Now()
		w.write(t, invalidConfig(i))
		invalid++
		body := failures(invalid, start)
		if got := metricValue(body, "corsauthz_config_last_reload_successful"); got != 0 {
			t.Fatalf("after invalid write %d: corsauthz_config_last_reload_successful = %v, want 0", i, got)
		}
		inForce(current, time.Now()) // unchanged
	}
	time.Sleep(50 * time.Millisecond)
	stopLoad()
	wg.Wait()

	body := s.metrics(t)
	if got := metricValue(body, `corsauthz_config_reloads_total{result="success"}`); got != float64(valid) {
		t.Errorf("successful reloads counted: %v, want %d", got, valid)
	}
	r := s.stop(t)
	if r.code != 0 {
		t.Errorf("serve exit code %d:\n%s", r.code, r.stderr)
	}
	if n := strings.Count(r.stderr, `msg="invalid configuration"`); n != 2*invalid {
		t.Errorf("%d problems logged for %d invalid files of 2 problems each", n, invalid)
	}

	slices.Sort(latencies)
	t.Logf("%d writes (%d valid, %d invalid); %d Checks from %d goroutines, %d failed; new configuration in force after: median %v, p90 %v, max %v",
		writes, valid, invalid, sent.Load(), workers, failed.Load(),
		latencies[len(latencies)/2].Round(time.Millisecond),
		latencies[len(latencies)*9/10].Round(time.Millisecond),
		latencies[len(latencies)-1].Round(time.Millisecond))
	if failed.Load() != 0 || sent.Load() == 0 {
		t.Errorf("%d of %d Checks failed or were answered by no valid configuration", failed.Load(), sent.Load())
	}
}

func TestServeFlagErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc string
		args []string
		want string
	}{
		{"certificate without key", []string{"--tls-cert-file", "tls.crt"}, "corsauthz serve: TLS needs both --tls-cert-file and --tls-key-file\n"},
		{"client CA without certificate", []string{"--tls-client-ca-file", "ca.crt"}, "corsauthz serve: TLS needs both --tls-cert-file and --tls-key-file\n"},
		{"no streams", []string{"--max-concurrent-streams", "0"}, "corsauthz serve: --max-concurrent-streams and --max-recv-msg-size must be positive, --decision-log-rate 0 or more\n"},
		{"negative log rate", []string{"--decision-log-rate", "-1"}, "corsauthz serve: --max-concurrent-streams and --max-recv-msg-size must be positive, --decision-log-rate 0 or more\n"},
		{"no xDS streams", []string{"--max-xds-streams", "0"}, "corsauthz serve: --max-xds-streams, --grpc-max-connections, --http-max-connections and --http-idle-timeout must be positive\n"},
		{"no gRPC connections", []string{"--grpc-max-connections", "0"}, "corsauthz serve: --max-xds-streams, --grpc-max-connections, --http-max-connections and --http-idle-timeout must be positive\n"},
		{"no HTTP connections", []string{"--http-max-connections", "-1"}, "corsauthz serve: --max-xds-streams, --grpc-max-connections, --http-max-connections and --http-idle-timeout must be positive\n"},
		{"no idle time", []string{"--http-idle-timeout", "0s"}, "corsauthz serve: --max-xds-streams, --grpc-max-connections, --http-max-connections and --http-idle-timeout must be positive\n"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, tc.args...)
			got := run(t, nil, args...)
			if got.code != 2 || got.stderr != tc.want {
				t.Errorf("exit %d, stderr %q; want 2, %q", got.code, got.stderr, tc.want)
			}
		})
	}
}

// TestServeBoundFlagsFromEnv: the new bounds are read from their
// CORSAUTHZ_ variables too.
func TestServeBoundFlagsFromEnv(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"CORSAUTHZ_MAX_XDS_STREAMS", "CORSAUTHZ_HTTP_MAX_CONNECTIONS", "CORSAUTHZ_HTTP_IDLE_TIMEOUT"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			value := "0"
			if name == "CORSAUTHZ_HTTP_IDLE_TIMEOUT" {
				value = "0s"
			}
			got := run(t, map[string]string{name: value}, "serve", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
			if want := "corsauthz serve: --max-xds-streams, --grpc-max-connections, --http-max-connections and --http-idle-timeout must be positive\n"; got.code != 2 || got.stderr != want {
				t.Errorf("%s=%s: exit %d, stderr %q; want 2, %q", name, value, got.code, got.stderr, want)
			}
		})
	}
}

func TestServeTLSFilesInvalid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	got := run(t, nil, "serve", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--tls-cert-file", cert, "--tls-key-file", key)
	if want := "corsauthz serve: TLS certificate " + cert + " and key " + key + ": open " + cert + ": no such file or directory\n"; got.code != 1 || !strings.HasSuffix(got.stderr, want) {
		t.Errorf("exit %d, stderr %q; want 1, ending %q", got.code, got.stderr, want)
	}
}
