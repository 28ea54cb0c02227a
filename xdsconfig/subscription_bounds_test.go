package xdsconfig_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// A hostile corsauthz (or anything answering on its address) against a
// gateway in local mode: finding 8 of issue 17. Before, a 15.5 MiB
// configuration was compiled (RSS 168 MB; a file is refused past 4 MiB),
// and alternating versions took 14.2 s of CPU in 20 s.

func sha(content string) string {
	sum := sha256.Sum256([]byte(content))
	return hex.EncodeToString(sum[:])
}

// hostileClient subscribes to srv with a logger and a registry of its own.
func hostileClient(t *testing.T, srv *xdsServer, opts xdsconfig.SubscribeOptions) (*xdsconfig.Subscription, *prometheus.Registry, *logSink) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var log logSink
	opts.Address, opts.Registerer, opts.Logger = srv.addr, reg, log.logger(slog.LevelDebug)
	opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	sub := xdsconfig.Subscribe(context.Background(), dial(t, srv.addr), opts)
	t.Cleanup(sub.Close)
	return sub, reg, &log
}

// aliasBomb is a small file whose aliases expand past policy.MaxYAMLNodes.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 8; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("policies: *a8\n")
	return b.String()
}

// manyPolicies is a valid file but for its n policies.
func manyPolicies(n int) string {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: p%d\n    allowed_origins: [https://o%d.example.com]\n", i, i)
	}
	return b.String()
}

// manyOrigins is a valid file but for its n origins, written out.
func manyOrigins(n int) string {
	var b strings.Builder
	b.WriteString("policies:\n  - name: big\n    allowed_origins:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - https://o%d.example.com\n", i)
	}
	return b.String()
}

// TestHostileResourcesNACKed: a resource past the caps of a file is
// NACKed with a message naming the limit, and the configuration in force
// stays; past the byte cap it is not decoded, let alone compiled.
func TestHostileResourcesNACKed(t *testing.T) {
	t.Parallel()
	srv := startXDSWith(t, xdsconfig.PublisherOptions{})
	good := mustLoad(t, configFor("https://good.example"))
	srv.pub.Publish(context.Background(), good)
	sub, reg, log := hostileClient(t, srv, xdsconfig.SubscribeOptions{})
	waitFor(t, 10*time.Second, "the good version not in force", func() bool { return hashOf(sub) != "" })
	inForce := hashOf(sub)

	tests := []struct {
		desc     string
		content  string
		wantErr  string
		compiled bool // the error comes from compiling (policy.Load)
	}{
		{desc: "one byte past the default --max-config-bytes", content: strings.Repeat("#", policy.DefaultMaxConfigBytes+1),
			wantErr: fmt.Sprintf("the configuration is %d bytes, more than the limit of %d bytes", policy.DefaultMaxConfigBytes+1, policy.DefaultMaxConfigBytes)},
		{desc: "15.5 MiB, within gRPC's message limit", content: strings.Repeat("#", 31<<19),
			wantErr: fmt.Sprintf("bytes, more than the limit of %d bytes", policy.DefaultMaxConfigBytes)},
		{desc: "too many policies", content: manyPolicies(policy.MaxPolicies + 1), wantErr: "policy.MaxPolicies", compiled: true},
		{desc: "too many origins", content: manyOrigins(policy.MaxOrigins + 1), wantErr: "policy.MaxOrigins", compiled: true},
		{desc: "alias bomb", content: aliasBomb(), wantErr: "policy.MaxYAMLNodes", compiled: true},
	}
	for _, tc := range tests {
		const refusing = "xDS: refusing a configuration (NACK); the last good one stays"
		nacked := metric(t, reg, "corsauthz_gateway_xds_updates_nacked_total")
		logged := log.count(refusing)
		compiles := metric(t, reg, "corsauthz_gateway_xds_compiles_total")
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heap0 := ms.HeapInuse
		if err := srv.pub.PublishRaw(sha(tc.content), "hostile.yaml", []byte(tc.content)); err != nil {
			t.Fatal(err)
		}
		// The subscription counts a NACK before it logs it: wait for both,
		// or the last line read is the previous case's.
		waitFor(t, 30*time.Second, tc.desc+": no NACK", func() bool {
			return metric(t, reg, "corsauthz_gateway_xds_updates_nacked_total") == nacked+1 && log.count(refusing) == logged+1
		})
		runtime.ReadMemStats(&ms)
		lines := log.withMsg(refusing)
		msg := fmt.Sprint(lines[len(lines)-1]["error"])
		t.Logf("%s (%d bytes): NACK %q; heap in use %d → %d MiB (client and server)", tc.desc, len(tc.content), msg, heap0>>20, ms.HeapInuse>>20)
		if !strings.Contains(msg, tc.wantErr) {
			t.Errorf("%s: NACKed with %q, want it to name %q", tc.desc, msg, tc.wantErr)
		}
		if got := metric(t, reg, "corsauthz_gateway_xds_compiles_total") - compiles; !tc.compiled && got != 0 {
			t.Errorf("%s: compiled %v times, want none", tc.desc, got)
		}
		if hashOf(sub) != inForce {
			t.Errorf("%s: the configuration in force changed", tc.desc)
		}
	}
	if got := metric(t, reg, "corsauthz_gateway_xds_updates_too_large_total"); got != 2 {
		t.Errorf("corsauthz_gateway_xds_updates_too_large_total = %v, want 2", got)
	}
}

// TestResourcePastMessageLimit: past gRPC's message limit (16 MiB) the
// message is refused before it is read: the stream breaks, which is
// logged naming the limit, and the configuration in force stays.
func TestResourcePastMessageLimit(t *testing.T) {
	t.Parallel()
	srv := startXDSWith(t, xdsconfig.PublisherOptions{})
	srv.pub.Publish(context.Background(), mustLoad(t, configFor("https://good.example")))
	sub, reg, log := hostileClient(t, srv, xdsconfig.SubscribeOptions{})
	waitFor(t, 10*time.Second, "the good version not in force", func() bool { return hashOf(sub) != "" })
	inForce := hashOf(sub)
	content := strings.Repeat("#", xdsconfig.MaxMessageSize+1)
	if err := srv.pub.PublishRaw(sha(content), "hostile.yaml", []byte(content)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the stream did not break", func() bool {
		for _, rec := range log.withMsg("xDS: the stream to corsauthz broke; the configuration in force stays; reconnecting") {
			if strings.Contains(fmt.Sprint(rec["error"]), "larger than max") {
				return true
			}
		}
		return false
	})
	if hashOf(sub) != inForce || metric(t, reg, "corsauthz_gateway_xds_compiles_total") != 1 {
		t.Errorf("the configuration in force changed, or the message was compiled")
	}
}

// bigVersion is a valid configuration of about 500 KB, different for each
// seed: its compile takes tens of milliseconds.
func bigVersion(seed int) string {
	var b strings.Builder
	b.WriteString("policies:\n  - name: big\n    allowed_origins:\n")
	for i := 0; b.Len() < 500_000; i++ {
		fmt.Fprintf(&b, "      - https://o%d-s%d.example.com\n", i, seed)
	}
	return b.String()
}

// TestVersionChurnBounded: a server that sends a new version as soon as
// the last is ACKed, alternating two, gets at most the compile budget:
// CompileBurst, then CompileShare of the time. Decisions stay those of
// one of the two versions.
func TestVersionChurnBounded(t *testing.T) {
	t.Parallel()
	srv := startXDSWith(t, xdsconfig.PublisherOptions{})
	versions := []string{bigVersion(1), bigVersion(2)}
	const burst, share = 300 * time.Millisecond, 0.1
	srv.pub.PublishRaw(sha(versions[0]), "a.yaml", []byte(versions[0]))
	born := time.Now()
	sub, reg, _ := hostileClient(t, srv, xdsconfig.SubscribeOptions{CompileBurst: burst, CompileShare: share})
	waitFor(t, 10*time.Second, "the first version not in force", func() bool { return hashOf(sub) != "" })

	const churn = 4 * time.Second
	start := time.Now()
	cpu0 := processCPU()
	for i := 1; time.Since(start) < churn; i++ {
		v := versions[i%2]
		if err := srv.pub.PublishRaw(sha(v), "churn.yaml", []byte(v)); err != nil {
			t.Fatal(err)
		}
		acked := metric(t, reg, "corsauthz_gateway_xds_updates_acked_total")
		waitFor(t, 30*time.Second, "a version was not ACKed", func() bool {
			return metric(t, reg, "corsauthz_gateway_xds_updates_acked_total") > acked
		})
	}
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	compiled := metric(t, reg, "corsauthz_gateway_xds_compile_seconds_total")
	compiles := metric(t, reg, "corsauthz_gateway_xds_compiles_total")
	waits := metric(t, reg, "corsauthz_gateway_xds_compile_waits_total")
	t.Logf("%s of churn: %v compiles in %.2f s, %v waits for the budget; process CPU %s (server and client)", elapsed.Round(time.Millisecond), compiles, compiled, waits, cpu.Round(time.Millisecond))
	// Over the subscription's life, the first compile included; the last
	// compile may overdraw the budget by its own time, which on a loaded
	// machine can be a few times the mean, and the budget's timer may fire
	// late there: half as much again is allowed. Without the budget the
	// client compiles for most of the churn, several times this limit.
	life := time.Since(born)
	perCompile := compiled / compiles
	if limit := 1.5 * ((burst + time.Duration(share*float64(life))).Seconds() + 3*perCompile); compiled > limit {
		t.Errorf("%.2f s compiling in the subscription's %s, more than the budget's %.2f s", compiled, life, limit)
	}
	if waits == 0 {
		t.Error("no version waited for the compile budget")
	}
	if h := hashOf(sub); h != sha(versions[0]) && h != sha(versions[1]) {
		t.Errorf("in force: %s, neither version", h)
	}
}

// TestMaxAgeReconnectIsDebug: corsauthz closes connections after
// --max-connection-age (5 minutes by default): the gateway reconnects and
// logs it at debug, not as a broken stream (before: a WARN every 5 minutes
// per gateway). A stream that really breaks is still a warning.
func TestMaxAgeReconnectIsDebug(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 300 * time.Millisecond, MaxConnectionAgeGrace: 100 * time.Millisecond}))
	pub := xdsconfig.NewPublisher(nil, nil)
	pub.Register(g)
	pub.Publish(context.Background(), mustLoad(t, configFor("https://good.example")))
	go g.Serve(lis)
	t.Cleanup(func() {
		pub.Shutdown()
		g.Stop()
	})
	srv := &xdsServer{addr: lis.Addr().String()}
	sub, _, log := hostileClient(t, srv, xdsconfig.SubscribeOptions{})
	const routine = "xDS: corsauthz closed the connection for its maximum age (routine); reconnecting"
	const broke = "xDS: the stream to corsauthz broke; the configuration in force stays; reconnecting"
	waitFor(t, 20*time.Second, "no reconnection for the connection's age", func() bool { return log.count(routine) >= 3 })
	if n := log.count(broke); n != 0 {
		t.Errorf("%d warnings of a broken stream for routine reconnections: %v", n, log.withMsg(broke))
	}
	for _, rec := range log.withMsg(routine) {
		if rec["level"] != "DEBUG" {
			t.Errorf("routine reconnection logged at %v", rec["level"])
		}
	}
	if hashOf(sub) == "" {
		t.Error("no configuration in force")
	}
	// The streams end, the connection stays: a real break.
	pub.Shutdown()
	waitFor(t, 10*time.Second, "a stream ended by the server is not a warning", func() bool { return log.count(broke) > 0 })
}
