package authorizer_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/internal/racedetector"
	"github.com/corsauthz/corsauthz/policy"
)

// hangingHTTP is an HTTP authorizer that reads requests and never
// answers; it counts the connections it has open.
func hangingHTTP(t *testing.T) (url string, open *atomic.Int64) {
	t.Helper()
	open = new(atomic.Int64)
	addr := rawServer(t, func(c net.Conn) {
		open.Add(1)
		defer open.Add(-1)
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	return "http://" + addr + "/auth", open
}

func hangingGRPC(t *testing.T) string {
	t.Helper()
	addr, _ := startGRPC(t, func(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	return addr
}

// flood asks name n times at once and returns the answers' results with
// the longest time an Overloaded answer took.
func flood(p *authorizer.Pool, name string, n int) (results map[authorizer.Result]int, slowestOverload time.Duration, removed []string) {
	var mu sync.Mutex
	results = map[authorizer.Result]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			a := p.Ask(context.Background(), name, &authorizer.Request{Method: "GET", Scheme: "https", Host: "h", Path: "/v1/x"})
			d := time.Since(t0)
			mu.Lock()
			results[a.Result]++
			if a.Result == authorizer.Overloaded {
				slowestOverload = max(slowestOverload, d)
				removed = a.RemoveUpstream
			}
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return results, slowestOverload, removed
}

// TestPoolBoundsHangingAuthorizers: 5,000 requests at once to each
// hanging authorizer: the calls past its share are answered Overloaded at
// once, those within it fail at their timeout, an HTTP authorizer never
// gets more than MaxInFlight connections, and another authorizer keeps
// answering throughout.
func TestPoolBoundsHangingAuthorizers(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	httpHangs := func(t *testing.T) (policy.Authorizer, *atomic.Int64) {
		url, conns := hangingHTTP(t)
		a := httpAuthorizer(url, timeout)
		a.Name = "hangs-http"
		return a, conns
	}
	grpcHangs := func(t *testing.T) (policy.Authorizer, *atomic.Int64) {
		a := grpcAuthorizer(hangingGRPC(t), timeout)
		a.Name = "hangs-grpc"
		return a, nil
	}
	tests := []struct {
		desc  string
		hangs []func(t *testing.T) (policy.Authorizer, *atomic.Int64)
	}{
		{desc: "HTTP authorizer hangs", hangs: []func(t *testing.T) (policy.Authorizer, *atomic.Int64){httpHangs}},
		{desc: "gRPC authorizer hangs", hangs: []func(t *testing.T) (policy.Authorizer, *atomic.Int64){grpcHangs}},
		{desc: "both hang", hangs: []func(t *testing.T) (policy.Authorizer, *atomic.Int64){httpHangs, grpcHangs}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, _ := startHTTP(t, func(w http.ResponseWriter, r *http.Request) {})
			as := []policy.Authorizer{httpAuthorizer(s.URL, timeout)}
			var conns []*atomic.Int64
			for _, h := range tc.hangs {
				a, c := h(t)
				as = append(as, a)
				conns = append(conns, c)
			}
			p := authorizer.NewPool(nil, nil)
			t.Cleanup(p.Close)
			if err := p.Sync(as); err != nil {
				t.Fatal(err)
			}
			share := authorizer.MaxPending / len(as)
			type flooded struct {
				results map[authorizer.Result]int
				slowest time.Duration
				removed []string
			}
			floods := make([]flooded, len(tc.hangs))
			var wg sync.WaitGroup
			for i, a := range as[1:] {
				wg.Go(func() { floods[i].results, floods[i].slowest, floods[i].removed = flood(p, a.Name, 5000) })
			}
			// Once the hanging authorizers hold their shares, the other
			// authorizer still answers.
			deadline := time.Now().Add(timeout)
			for p.Pending() < share*len(tc.hangs) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			pending := p.Pending()
			// The connections of the calls on the wire, once dialled
			// (before any timeout closes one and lets a waiting call dial).
			time.Sleep(timeout / 4)
			var open []int64
			for _, c := range conns {
				if c != nil {
					open = append(open, c.Load())
				}
			}
			t0 := time.Now()
			a := p.Ask(context.Background(), "http", &authorizer.Request{Method: "GET", Host: "h", Path: "/"})
			healthyTook := time.Since(t0)
			wg.Wait()
			t.Logf("pending at saturation %d (share %d each); HTTP connections open %v; floods %v; the other authorizer answered %v in %s", pending, share, open, floods, a.Result, healthyTook)
			for _, n := range open {
				if n > authorizer.MaxInFlight {
					t.Errorf("%d connections open to a hanging authorizer, more than %d", n, authorizer.MaxInFlight)
				}
			}
			if a.Result != authorizer.Allow || healthyTook > timeout/2 {
				t.Errorf("the other authorizer answered %v (%v) in %s while the others hung", a.Result, a.Err, healthyTook)
			}
			if pending > share*len(tc.hangs) {
				t.Errorf("%d calls pending, more than the shares of %d", pending, share)
			}
			for i, f := range floods {
				if f.results[authorizer.Overloaded] < 5000-share || f.results[authorizer.Error] > share || f.results[authorizer.Allow] > 0 {
					t.Errorf("%s: results %v: want at most %d waiting, the rest Overloaded", as[i+1].Name, f.results, share)
				}
				// The machine is shared and loaded: "at once" is far
				// sooner than the timeout the calls within the share wait.
				// Under on_error: allow an Overloaded call passes: the
				// client's own upstream headers must still go.
				if as[i+1].HTTP != nil && !slices.Equal(f.removed, as[i+1].HTTP.UpstreamHeaders) {
					t.Errorf("%s: an Overloaded answer removes %q, want the upstream_headers %q", as[i+1].Name, f.removed, as[i+1].HTTP.UpstreamHeaders)
				}
				if f.slowest > timeout/2 {
					t.Errorf("%s: an Overloaded answer took %s: not at once", as[i+1].Name, f.slowest)
				}
			}
			if p.Pending() != 0 {
				t.Errorf("%d calls still counted after all returned", p.Pending())
			}
		})
	}
}

// TestPoolMemoryUnderHangingAuthorizers measures, in a child process run
// with GOMEMLIMIT=128MiB as shipped, the peak RSS, heap and goroutines of
// 5,000 concurrent calls to a hanging HTTP authorizer, then 5,000 to a
// hanging gRPC authorizer (the test's own 5,000 caller goroutines and both
// servers included, so the figures are upper bounds of the pool's).
func TestPoolMemoryUnderHangingAuthorizers(t *testing.T) {
	if os.Getenv("CORSAUTHZ_POOL_MEMORY_CHILD") == "1" {
		poolMemoryChild(t)
		return
	}
	if testing.Short() {
		t.Skip("-short: the memory measure takes a few seconds")
	}
	racedetector.SkipMemoryMeasure(t)
	t.Parallel()
	var out []byte
	for _, kind := range []string{"http", "grpc"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPoolMemoryUnderHangingAuthorizers$", "-test.v")
		cmd.Env = append(os.Environ(), "CORSAUTHZ_POOL_MEMORY_CHILD=1", "CORSAUTHZ_POOL_MEMORY_KIND="+kind, "GOMEMLIMIT=128MiB")
		o, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, o)
		}
		out = append(out, o...)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if !strings.Contains(line, "peak_rss_bytes=") {
			continue
		}
		t.Log(strings.TrimSpace(line))
		f := strings.Fields(line[strings.Index(line, "kind="):])
		kv := map[string]string{}
		for _, x := range f {
			k, v, _ := strings.Cut(x, "=")
			kv[k] = v
		}
		rss, _ := strconv.ParseInt(kv["peak_rss_bytes"], 10, 64)
		if rss == 0 || rss > 128<<20 {
			t.Errorf("%s: peak RSS %d bytes, over 128 MiB", kv["kind"], rss)
		}
	}
	if !strings.Contains(string(out), "kind=grpc") || !strings.Contains(string(out), "kind=http") {
		t.Errorf("the child measured nothing:\n%s", out)
	}
}

func poolMemoryChild(t *testing.T) {
	const timeout = 2 * time.Second
	for _, kind := range []string{os.Getenv("CORSAUTHZ_POOL_MEMORY_KIND")} {
		var cfg policy.Authorizer
		if kind == "http" {
			url, _ := hangingHTTP(t)
			cfg = httpAuthorizer(url, timeout)
		} else {
			cfg = grpcAuthorizer(hangingGRPC(t), timeout)
		}
		p := authorizer.NewPool(nil, nil)
		if err := p.Sync([]policy.Authorizer{cfg}); err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		base := rssBytes()
		var peakRSS, peakHeap uint64
		peakG := 0
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			var ms runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				peakRSS = max(peakRSS, rssBytes())
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
				peakG = max(peakG, runtime.NumGoroutine())
			}
		}()
		t0 := time.Now()
		results, slowest, _ := flood(p, cfg.Name, 5000)
		took := time.Since(t0)
		close(stop)
		<-sampled
		p.Close()
		fmt.Printf("kind=%s calls=5000 results=%v slowest_overloaded=%s all_done_in=%s base_rss_bytes=%d peak_rss_bytes=%d peak_heap_inuse_bytes=%d peak_goroutines=%d\n",
			kind, strings.ReplaceAll(fmt.Sprint(results), " ", ","), slowest, took.Round(time.Millisecond), base, peakRSS, peakHeap, peakG)
	}
}

// rssBytes is the process's resident set size, from /proc (0 elsewhere).
func rssBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
