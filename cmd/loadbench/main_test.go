package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/extauthz"
	"github.com/corsauthz/corsauthz/policy"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// The command name may hold spaces and parentheses.
	stat := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1234 0 0 0 731 269 0 0 20 0 9 0 12345 1000000 2000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 1000 {
		t.Errorf("parseStatCPU = %d, %v; want 1000", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("parseStatCPU accepted a short line")
	}
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc")
	}
	if _, err := parseStatCPU(data); err != nil {
		t.Errorf("parseStatCPU(/proc/self/stat): %v", err)
	}
}

func TestParseStatusMem(t *testing.T) {
	t.Parallel()
	status := "Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t   30720 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n"
	rss, hwm, err := parseStatusMem([]byte(status))
	if err != nil || rss != 20480 || hwm != 30720 {
		t.Errorf("parseStatusMem = %d, %d, %v; want 20480, 30720", rss, hwm, err)
	}
	if _, _, err := parseStatusMem([]byte("Name:\tx\n")); err == nil {
		t.Error("parseStatusMem accepted a status without VmRSS")
	}
}

func TestParseGhzReport(t *testing.T) {
	t.Parallel()
	out := `{"count":200,"total":2450020054,"average":4660675,"rps":8163.19,
		"errorDistribution":{},"statusCodeDistribution":{"OK":200},
		"latencyDistribution":[{"percentage":50,"latency":4168207},{"percentage":99,"latency":12696182}],
		"details":[{"latency":1}]}`
	r, err := parseGhzReport([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.Count != 200 || r.RPS != 8163.19 || r.percentile(50) != 4168207*time.Nanosecond || r.percentile(99) != 12696182*time.Nanosecond {
		t.Errorf("parseGhzReport = %+v", r)
	}
	if _, err := parseGhzReport([]byte(`{"count":0}`)); err == nil {
		t.Error("parseGhzReport accepted a report without calls")
	}
}

// TestWorkload checks that each configuration is what the docs say (the
// benchmark's, and the one at the caps) and that corsauthz answers each
// request sort as intended under it, in process: the load measures the
// decisions it claims to.
func TestWorkload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc                           string
		config                         string
		policies, exact, wildcards     int
		exactAtLeast, wildcardsAtLeast bool
	}{
		{desc: "benchmark configuration", config: benchConfig(), policies: numPolicies, exact: numExactOrigins, wildcards: numWildcards, exactAtLeast: true, wildcardsAtLeast: true},
		{desc: "configuration at the caps", config: capsConfig(), policies: policy.MaxPolicies, exact: 45_904, wildcards: 4_096},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			e, _, err := policy.Load("bench.yaml", []byte(tc.config))
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.Config()
			exact, wildcards := 0, 0
			for _, p := range cfg.Policies {
				for _, o := range p.AllowedOrigins {
					if strings.Contains(o, "*") {
						wildcards++
					} else {
						exact++
					}
				}
			}
			okExact := exact == tc.exact || (tc.exactAtLeast && exact > tc.exact)
			okWildcards := wildcards == tc.wildcards || (tc.wildcardsAtLeast && wildcards > tc.wildcards)
			if len(cfg.Policies) != tc.policies || !okExact || !okWildcards {
				t.Errorf("%d policies, %d exact origins, %d wildcards; want %d, %d, %d",
					len(cfg.Policies), exact, wildcards, tc.policies, tc.exact, tc.wildcards)
			}
			a := extauthz.New(decision.New(policy.NewHolder(e), decision.Options{}))
			for _, k := range requestKinds() {
				resp, err := a.Check(context.Background(), k.req)
				if err != nil {
					t.Fatalf("%s: %v", k.name, err)
				}
				if err := expectAnswer(k.name, resp); err != nil {
					t.Error(err)
				}
				if size := proto.Size(k.req); size < 900 {
					t.Errorf("%s: %d bytes; a browser's request through Envoy is larger", k.name, size)
				}
			}
		})
	}
	if _, err := selectKinds(requestKinds(), "preflight,nope"); err == nil {
		t.Error("selectKinds accepted an unknown request sort")
	}
}

func TestProtoset(t *testing.T) {
	t.Parallel()
	set := protoset()
	var names []string
	for _, f := range set.GetFile() {
		names = append(names, f.GetName())
	}
	if last := names[len(names)-1]; last != "envoy/service/auth/v3/external_auth.proto" {
		t.Errorf("protoset ends with %q; want the service's file last, after its imports", last)
	}
}

// TestSmoke runs the whole benchmark with tiny loads. It builds two
// binaries and needs ghz, so it only runs with CORSAUTHZ_LOADBENCH_SMOKE=1.
func TestSmoke(t *testing.T) {
	if os.Getenv("CORSAUTHZ_LOADBENCH_SMOKE") != "1" {
		t.Skip("set CORSAUTHZ_LOADBENCH_SMOKE=1 to run the load benchmark with tiny loads")
	}
	var stdout, stderr bytes.Buffer
	o := options{n: 300, c: 10, conns: 1, rounds: 2, warmup: 50, kinds: "preflight,actual,no-origin", skipCompile: true}
	if err := run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.Bytes())
	}
	for _, want := range []string{"| preflight | corsauthz |", "| no-origin | do-nothing |", "Ratios corsauthz / do-nothing"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.Bytes())
		}
	}
}

// TestChainConfig: the chained configuration loads, and an actual request
// to the api policy asks the do-nothing server.
func TestChainConfig(t *testing.T) {
	t.Parallel()
	e, _, err := policy.Load("chain.yaml", []byte(chainConfig(benchConfig(), "127.0.0.1:9")))
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(&policy.Request{Method: "GET", Policy: benchPolicyName, Origin: benchAllowOrigin})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.AuthorizerFor(&d); got != "nothing" {
		t.Errorf("AuthorizerFor = %q, want nothing", got)
	}
}

func TestInstallDir(t *testing.T) {
	t.Parallel()
	sep := string(os.PathListSeparator)
	for _, tc := range []struct {
		desc, goEnv, want string
	}{
		{"GOBIN set: go install puts ghz there", "/opt/bin\n/home/u/go\n", "/opt/bin"},
		{"GOBIN empty: GOPATH's bin", "\n/home/u/go\n", filepath.Join("/home/u/go", "bin")},
		{"GOPATH with several entries: the first", "\n/a" + sep + "/b\n", filepath.Join("/a", "bin")},
	} {
		if got := installDir(tc.goEnv); got != tc.want {
			t.Errorf("%s: installDir(%q) = %q, want %q", tc.desc, tc.goEnv, got, tc.want)
		}
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 4s test @ http://127.0.0.1:1/check
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   610.40us  312.15us  10.27ms   93.10%
  205416 requests in 4.00s, 31.54MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  51339.82
Transfer/sec:      7.88MB
`
	got, err := parseWrk(out)
	if err != nil || got.requests != 205416 || got.rps != 51339.82 || got.non2xx != 3 {
		t.Errorf("parseWrk = %+v, %v", got, err)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("parseWrk accepted an output without a summary")
	}
}
