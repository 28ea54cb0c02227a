package xdsconfig_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/corsauthz/corsauthz/policy"
	"github.com/corsauthz/corsauthz/xdsconfig"
)

// configFor is a valid configuration whose one policy allows origin.
func configFor(origin string) string {
	return fmt.Sprintf("policies:\n  - name: api\n    allowed_origins: [%q]\ndefault_policy: api\n", origin)
}

func mustLoad(tb testing.TB, yaml string) *policy.Engine {
	tb.Helper()
	e, _, err := policy.Load("test.yaml", []byte(yaml))
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// xdsServer is a gRPC server on loopback serving a Publisher.
type xdsServer struct {
	pub  *xdsconfig.Publisher
	reg  *prometheus.Registry
	grpc *grpc.Server
	addr string
}

func startXDS(tb testing.TB, addr string) *xdsServer {
	tb.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	s := &xdsServer{reg: prometheus.NewRegistry(), grpc: grpc.NewServer(), addr: lis.Addr().String()}
	s.pub = xdsconfig.NewPublisher(s.reg, nil)
	s.pub.Register(s.grpc)
	go s.grpc.Serve(lis)
	tb.Cleanup(s.grpc.Stop)
	return s
}

func dial(tb testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cc.Close() })
	return cc
}

func subscribe(tb testing.TB, cc *grpc.ClientConn, reg prometheus.Registerer) *xdsconfig.Subscription {
	tb.Helper()
	sub := xdsconfig.Subscribe(context.Background(), cc, xdsconfig.SubscribeOptions{
		Address: cc.Target(), Registerer: reg, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	tb.Cleanup(sub.Close)
	return sub
}

// waitFor polls cond until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func hashOf(sub *xdsconfig.Subscription) string {
	if e := sub.Engine(); e != nil {
		return e.Hash()
	}
	return ""
}

func TestVersionFlow(t *testing.T) {
	t.Parallel()
	srv := startXDS(t, "127.0.0.1:0")
	clientReg := prometheus.NewRegistry()
	sub := subscribe(t, dial(t, srv.addr), clientReg)

	select {
	case <-sub.Ready():
		t.Fatal("ready before anything was published")
	case <-time.After(50 * time.Millisecond):
	}
	v1 := mustLoad(t, configFor("https://one.example"))
	srv.pub.Publish(context.Background(), v1)
	select {
	case <-sub.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no configuration 5s after the first publish")
	}
	if hashOf(sub) != xdsconfig.PublishedVersion(v1) {
		t.Fatalf("in force %s, want %s", hashOf(sub), xdsconfig.PublishedVersion(v1))
	}
	for i := range 5 {
		e := mustLoad(t, configFor(fmt.Sprintf("https://v%d.example", i)))
		srv.pub.Publish(context.Background(), e)
		waitFor(t, 5*time.Second, "version "+xdsconfig.PublishedVersion(e)+" not in force", func() bool { return hashOf(sub) == xdsconfig.PublishedVersion(e) })
		d, err := sub.Engine().Decide(&policy.Request{Method: "GET", Host: "h", Path: "/", Origin: fmt.Sprintf("https://v%d.example", i)})
		if err != nil || d.Kind != policy.KindActualAllowed {
			t.Fatalf("the engine in force does not decide with version %d: %v %v", i, d.Kind, err)
		}
	}
	srv.pub.Publish(context.Background(), sub.Engine()) // the same version again: nothing sent
	waitFor(t, 5*time.Second, "ACKs not counted", func() bool {
		return metric(t, srv.reg, "corsauthz_xds_versions_acked_total") == 6
	})
	if got := metric(t, srv.reg, "corsauthz_xds_versions_sent_total"); got != 6 {
		t.Errorf("versions sent = %v, want 6", got)
	}
	if got := metric(t, clientReg, "corsauthz_gateway_xds_updates_acked_total"); got != 6 {
		t.Errorf("client ACKs = %v, want 6", got)
	}
	if got := metric(t, clientReg, "corsauthz_gateway_xds_connected"); got != 1 {
		t.Errorf("connected = %v, want 1", got)
	}
	if sub.Staleness() != 0 {
		t.Errorf("staleness %v while connected", sub.Staleness())
	}
}

// metric returns the value of name in reg (summed over its series).
func metric(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var v float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return v
}

func TestNackKeepsLastGood(t *testing.T) {
	t.Parallel()
	srv := startXDS(t, "127.0.0.1:0")
	clientReg := prometheus.NewRegistry()
	sub := subscribe(t, dial(t, srv.addr), clientReg)
	good := mustLoad(t, configFor("https://good.example"))
	srv.pub.Publish(context.Background(), good)
	waitFor(t, 5*time.Second, "first version not in force", func() bool { return hashOf(sub) == xdsconfig.PublishedVersion(good) })

	for _, tt := range []struct {
		desc, version, content string
	}{
		{desc: "does not compile", content: "policies:\n  - name: api\n    allowed_origins: []\n    future_field: 1\n"},
		{desc: "version is not the content's hash", version: "not-a-hash", content: configFor("https://other.example")},
	} {
		version := tt.version
		if version == "" {
			sum := sha256.Sum256([]byte(tt.content))
			version = hex.EncodeToString(sum[:])
		}
		before := metric(t, srv.reg, "corsauthz_xds_versions_nacked_total")
		if err := srv.pub.PublishRaw(version, "bad.yaml", []byte(tt.content)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, tt.desc+": no NACK", func() bool {
			return metric(t, srv.reg, "corsauthz_xds_versions_nacked_total") == before+1
		})
		if hashOf(sub) != xdsconfig.PublishedVersion(good) {
			t.Errorf("%s: the last good version is no longer in force", tt.desc)
		}
	}
	if got := metric(t, clientReg, "corsauthz_gateway_xds_updates_nacked_total"); got != 2 {
		t.Errorf("client NACKs = %v, want 2", got)
	}
	// A good version after NACKs is taken.
	next := mustLoad(t, configFor("https://next.example"))
	srv.pub.Publish(context.Background(), next)
	waitFor(t, 5*time.Second, "a good version after NACKs not in force", func() bool { return hashOf(sub) == xdsconfig.PublishedVersion(next) })
}

func TestReconnectAfterServerRestart(t *testing.T) {
	t.Parallel()
	srv := startXDS(t, "127.0.0.1:0")
	sub := subscribe(t, dial(t, srv.addr), nil)
	v1 := mustLoad(t, configFor("https://one.example"))
	srv.pub.Publish(context.Background(), v1)
	waitFor(t, 5*time.Second, "v1 not in force", func() bool { return hashOf(sub) == xdsconfig.PublishedVersion(v1) })

	srv.grpc.Stop()
	waitFor(t, 5*time.Second, "staleness still 0 with the server gone", func() bool { return sub.Staleness() > 0 })
	time.Sleep(300 * time.Millisecond) // a few reconnection attempts fail
	if hashOf(sub) != xdsconfig.PublishedVersion(v1) {
		t.Fatal("the last good configuration is gone while the server is away")
	}

	var restarted *xdsServer
	waitFor(t, 5*time.Second, "could not listen on the old address again", func() bool {
		lis, err := net.Listen("tcp", srv.addr)
		if err != nil {
			return false
		}
		lis.Close()
		restarted = startXDS(t, srv.addr)
		return true
	})
	v2 := mustLoad(t, configFor("https://two.example"))
	restarted.pub.Publish(context.Background(), v2)
	waitFor(t, 10*time.Second, "v2 from the restarted server not in force", func() bool { return hashOf(sub) == xdsconfig.PublishedVersion(v2) })
	if sub.Staleness() != 0 {
		t.Errorf("staleness %v after reconnecting", sub.Staleness())
	}
}

// TestStuckClientBlocksNobody: a client that opens a stream and never
// reads holds only its own stream; the server publishes and the other
// clients get every version.
func TestStuckClientBlocksNobody(t *testing.T) {
	t.Parallel()
	srv := startXDS(t, "127.0.0.1:0")
	// Large versions fill the stuck stream's flow-control window at once.
	big := func(i int) *policy.Engine {
		var b strings.Builder
		b.WriteString("policies:\n")
		for j := range policy.MaxPolicies { // over 100 KB, past the stream window
			fmt.Fprintf(&b, "  - name: p%d-%d\n    match: {hosts: [h%d.example]}\n    allowed_origins: [\"https://o%d.example\"]\n", i, j, j, j)
		}
		return mustLoad(t, b.String())
	}
	srv.pub.Publish(context.Background(), big(0))

	stuckConn := dial(t, srv.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stuck, err := discoveryv3.NewAggregatedDiscoveryServiceClient(stuckConn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stuck.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "stuck"}, TypeUrl: xdsconfig.TypeURL}); err != nil {
		t.Fatal(err)
	}
	// ...and never Recv.

	sub := subscribe(t, dial(t, srv.addr), nil)
	for i := 1; i <= 5; i++ {
		e := big(i)
		done := make(chan struct{})
		go func() {
			srv.pub.Publish(context.Background(), e)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Publish blocked by a client that does not read")
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("version %d not in force in the live client", i), func() bool { return hashOf(sub) == xdsconfig.PublishedVersion(e) })
	}
}

// TestManyStreams: a few hundred gateways subscribed at once all get each
// version.
func TestManyStreams(t *testing.T) {
	t.Parallel()
	const conns, perConn = 10, 30
	srv := startXDS(t, "127.0.0.1:0")
	v1 := mustLoad(t, configFor("https://one.example"))
	srv.pub.Publish(context.Background(), v1)
	var subs []*xdsconfig.Subscription
	for range conns {
		cc := dial(t, srv.addr)
		for range perConn {
			subs = append(subs, subscribe(t, cc, nil))
		}
	}
	all := func(hash string) func() bool {
		return func() bool {
			for _, s := range subs {
				if hashOf(s) != hash {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, 30*time.Second, "not every stream got v1", all(xdsconfig.PublishedVersion(v1)))
	if got := metric(t, srv.reg, "corsauthz_xds_streams"); got != conns*perConn {
		t.Errorf("open streams = %v, want %d", got, conns*perConn)
	}
	v2 := mustLoad(t, configFor("https://two.example"))
	srv.pub.Publish(context.Background(), v2)
	waitFor(t, 30*time.Second, "not every stream got v2", all(xdsconfig.PublishedVersion(v2)))

	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(s.Close)
	}
	wg.Wait()
	waitFor(t, 10*time.Second, "streams still counted after every client closed", func() bool {
		return metric(t, srv.reg, "corsauthz_xds_streams") == 0
	})
}

func TestOtherResourceTypesRefused(t *testing.T) {
	t.Parallel()
	srv := startXDS(t, "127.0.0.1:0")
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, srv.addr)).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err == nil || !strings.Contains(err.Error(), "serves only") {
		t.Errorf("a request for clusters: %v, want an error naming the one type served", err)
	}
}
