package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/internal/freeport"
	"github.com/corsauthz/corsauthz/policy"
)

// files is a readFile over a map: the /proc and /sys files a test gives.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if v, ok := m[name]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
}

func TestContainerMemoryMax(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc  string
		files map[string]string
		want  int64 // 0: none
	}{
		{desc: "no cgroup files (not Linux, or cgroup v1 only)", files: nil},
		{desc: "container with its own cgroup namespace: /sys/fs/cgroup is its cgroup",
			files: map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "134217728\n"}, want: 128 << 20},
		{desc: "cgroup named by /proc/self/cgroup",
			files: map[string]string{"/proc/self/cgroup": "0::/kubepods/pod1/c1\n", "/sys/fs/cgroup/kubepods/pod1/c1/memory.max": "67108864\n", "/sys/fs/cgroup/memory.max": "max\n"}, want: 64 << 20},
		{desc: "no limit", files: map[string]string{"/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "max\n"}},
		{desc: "hybrid hierarchy: the v2 line among v1 ones",
			files: map[string]string{"/proc/self/cgroup": "12:memory:/x\n0::/y\n", "/sys/fs/cgroup/y/memory.max": "1048576000\n"}, want: 1048576000},
		{desc: "cgroup path climbing out is not followed",
			files: map[string]string{"/proc/self/cgroup": "0::/../etc\n", "/sys/fs/etc/memory.max": "1\n"}},
		{desc: "garbage in memory.max", files: map[string]string{"/sys/fs/cgroup/memory.max": "lots\n"}},
		{desc: "zero", files: map[string]string{"/sys/fs/cgroup/memory.max": "0\n"}},
	} {
		got, ok := containerMemoryMax(files(tc.files))
		if ok != (tc.want != 0) || got != tc.want {
			t.Errorf("%s: containerMemoryMax = %d, %v; want %d", tc.desc, got, ok, tc.want)
		}
	}
}

func TestRuntimeTuningLimit(t *testing.T) {
	t.Parallel()
	env := func(set ...string) Env {
		return func(name string) (string, bool) {
			for _, s := range set {
				if s == name {
					return "1", true
				}
			}
			return "", false
		}
	}
	for _, tc := range []struct {
		desc          string
		env           Env
		memoryMax     string
		wantContainer int64
		gcSet, lim    bool
	}{
		{desc: "no container limit: none", env: env()},
		{desc: "1 GiB: 24 MiB kept for what the Go runtime does not count (the binary's pages)", env: env(), memoryMax: "1073741824", wantContainer: 1<<30 - 24<<20},
		{desc: "the shipped pod's 128 Mi: 104 MiB, as with GOMEMLIMIT", env: env(), memoryMax: "134217728", wantContainer: 104 << 20},
		{desc: "64 Mi: a quarter kept", env: env(), memoryMax: "67108864", wantContainer: 48 << 20},
		{desc: "GOMEMLIMIT set: it decides, not the container", env: env("GOMEMLIMIT"), memoryMax: "67108864", lim: true},
		{desc: "GOGC set: the targets are its", env: env("GOGC"), gcSet: true},
	} {
		fs := map[string]string{}
		if tc.memoryMax != "" {
			fs["/sys/fs/cgroup/memory.max"] = tc.memoryMax
		}
		rt := newRuntimeTuning(tc.env, files(fs))
		if rt.container != tc.wantContainer || rt.gcPercentSet != tc.gcSet || rt.limitSet != tc.lim {
			t.Errorf("%s: %+v; want container limit %d, GOGC set %v, GOMEMLIMIT set %v", tc.desc, *rt, tc.wantContainer, tc.gcSet, tc.lim)
		}
	}
	var nilTuning *runtimeTuning
	nilTuning.start()
	nilTuning.loading()
	if gc, limit := nilTuning.serving(); gc != 0 || limit != 0 {
		t.Errorf("a nil runtimeTuning reported %d, %d", gc, limit)
	}
}

func TestGCPercentFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc string
		live int64
		want int
	}{
		{desc: "nothing live", live: 0, want: servingGCPercent},
		{desc: "a usual configuration, a few MiB", live: 3 << 20, want: servingGCPercent},
		{desc: "4 MiB: 8 MiB of growth is 200%", live: 4 << 20, want: 200},
		{desc: "8 MiB (1,000 policies, 50,000 origins, loaded): 8 MiB of growth", live: 8 << 20, want: 100},
		{desc: "16 MiB: 8 MiB of growth is 50%", live: 16 << 20, want: 50},
		{desc: "24 MiB: 8 MiB of growth", live: 24 << 20, want: 33},
		{desc: "1 GiB: never below the loading target", live: 1 << 30, want: loadingGCPercent},
	} {
		if got := gcPercentFor(tc.live); got != tc.want {
			t.Errorf("%s: gcPercentFor(%d) = %d, want %d", tc.desc, tc.live, got, tc.want)
		}
	}
}

// TestServeMemoryPolicy runs serve in a child process, as the corsauthz
// binary does (TuneRuntime), and reads the collector's settings from its
// /metrics: GOGC 200 for a small configuration and less for one at the
// caps, the soft memory limit the container's (none outside one); GOGC as
// set, and GOMEMLIMIT less memoryLimitHeadroom, when they are set.
func TestServeMemoryPolicy(t *testing.T) {
	if os.Getenv("CORSAUTHZ_TEST_SERVE_CHILD") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		os.Exit(Main(ctx, strings.Fields(os.Getenv("CORSAUTHZ_TEST_SERVE_ARGS")), IO{Stdout: os.Stdout, Stderr: os.Stderr, Env: os.LookupEnv, TuneRuntime: true}))
	}
	t.Parallel()
	// Without GOMEMLIMIT, the limit is the container's, on this machine.
	noLimit := float64(math.MaxInt64)
	if memMax, ok := containerMemoryMax(os.ReadFile); ok {
		noLimit = float64(belowLimit(memMax))
	}
	caps := filepath.Join(t.TempDir(), "caps.yaml")
	if err := os.WriteFile(caps, []byte(capsConfig()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc         string
		config       string
		env          []string
		wantGOGC     func(float64) bool
		wantGOGCText string
		wantLimit    float64
	}{
		{desc: "defaults, a small configuration", config: "testdata/valid.yaml", wantLimit: noLimit,
			wantGOGC: func(v float64) bool { return v == servingGCPercent }, wantGOGCText: "200"},
		{desc: "a configuration at the caps: a lower target", config: caps, wantLimit: noLimit,
			wantGOGC: func(v float64) bool { return v >= loadingGCPercent && v < servingGCPercent }, wantGOGCText: "25 to 199"},
		{desc: "GOGC and GOMEMLIMIT from the environment win (less the binary's headroom)", config: caps, env: []string{"GOGC=150", "GOMEMLIMIT=300MiB"},
			wantGOGC: func(v float64) bool { return v == 150 }, wantGOGCText: "150", wantLimit: 300<<20 - 24<<20},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			admin := freeport.Addr(t)
			cmd := exec.Command(os.Args[0], "-test.run=^TestServeMemoryPolicy$")
			// The test's own GOGC and GOMEMLIMIT, if any, are not the case's.
			cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
				return strings.HasPrefix(kv, "GOGC=") || strings.HasPrefix(kv, "GOMEMLIMIT=")
			})
			cmd.Env = append(cmd.Env, tc.env...)
			cmd.Env = append(cmd.Env, "CORSAUTHZ_TEST_SERVE_CHILD=1",
				"CORSAUTHZ_TEST_SERVE_ARGS=serve --config "+tc.config+" --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --admin-addr "+admin)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				_ = cmd.Wait()
			}()
			metrics := scrape(t, "http://"+admin+"/metrics", &out)
			if got := metrics["go_gc_gogc_percent"]; !tc.wantGOGC(got) {
				t.Errorf("go_gc_gogc_percent %v, want %s", got, tc.wantGOGCText)
			}
			if got := metrics["go_gc_gomemlimit_bytes"]; got != tc.wantLimit {
				t.Errorf("go_gc_gomemlimit_bytes %v, want %v", got, tc.wantLimit)
			}
		})
	}
}

// capsConfig is a configuration at the documented caps: 1,000 policies,
// 50,000 allowed origins.
func capsConfig() string {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := range policy.MaxPolicies {
		fmt.Fprintf(&b, "  - name: p%d\n    match:\n      hosts: [p%d.example.com]\n    allowed_origins:\n", i, i)
		for j := range policy.MaxOrigins / policy.MaxPolicies {
			fmt.Fprintf(&b, "      - https://tenant%d.p%d.example.org\n", j, i)
		}
	}
	return b.String()
}

// scrape reads the unlabelled gauges of a Prometheus text page, waiting up
// to 20 s for the server to answer.
func scrape(t *testing.T, url string, log *bytes.Buffer) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			out := map[string]float64{}
			for line := range strings.SplitSeq(string(body), "\n") {
				name, value, ok := strings.Cut(line, " ")
				if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
					continue
				}
				if v, err := strconv.ParseFloat(value, 64); err == nil {
					out[name] = v
				}
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer %s: %v\n%s", url, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKeepHeadroom: with GOMEMLIMIT set, the Go runtime aims
// memoryLimitHeadroom lower (at most a quarter of the limit), so that the
// binary's own pages fit under the container's limit too; without it,
// nothing is set. Not parallel: it sets the process's memory limit.
func TestKeepHeadroom(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(before)
	for _, tc := range []struct {
		desc  string
		limit int64
		want  int64
	}{
		{desc: "128 MiB, as shipped", limit: 128 << 20, want: 104 << 20},
		{desc: "64 MiB: a quarter kept", limit: 64 << 20, want: 48 << 20},
		{desc: "1 GiB", limit: 1 << 30, want: 1<<30 - 24<<20},
		{desc: "no GOMEMLIMIT", limit: math.MaxInt64, want: 0},
	} {
		debug.SetMemoryLimit(tc.limit)
		got := keepHeadroom()
		if got != tc.want {
			t.Errorf("%s: keepHeadroom = %d, want %d", tc.desc, got, tc.want)
		}
		if tc.want > 0 && debug.SetMemoryLimit(-1) != tc.want {
			t.Errorf("%s: the runtime's limit is %d, want %d", tc.desc, debug.SetMemoryLimit(-1), tc.want)
		}
	}
}
