package xdsconfig

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/policy"
	corsauthzv1 "github.com/corsauthz/corsauthz/proto/gen/corsauthz/v1"
)

// manyPolicies is a configuration of n policies with three origins each.
func manyPolicies(n int) string {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: p%d\n    match: {hosts: [h%d.example.com]}\n    allowed_origins: [https://a%d.example.com, \"https://*.b%d.example.com\"]\n", i, i, i, i)
	}
	return b.String()
}

func load(tb testing.TB, yaml string) *policy.Engine {
	tb.Helper()
	e, _, err := policy.Load("test.yaml", []byte(yaml))
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// TestEncodeConfiguration: the resource encoded with the canonical form
// written into it is byte for byte what proto.Marshal makes of the
// Configuration holding Canonical's bytes.
func TestEncodeConfiguration(t *testing.T) {
	for _, tc := range []struct {
		desc, version, source, config string
	}{
		{desc: "one policy", version: "abc", source: PublishedSource, config: "policies:\n  - {name: a, allowed_origins: [\"*\"]}\n"},
		{desc: "500 policies (multi-byte lengths, many flushes)", version: strings.Repeat("f", 64), source: PublishedSource, config: manyPolicies(500)},
		{desc: "no version or source", config: manyPolicies(2)},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			e := load(t, tc.config)
			canon, err := e.Canonical()
			if err != nil {
				t.Fatal(err)
			}
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&corsauthzv1.Configuration{Version: tc.version, Source: tc.source, Content: canon})
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodeConfiguration(tc.version, tc.source, e, len(canon))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("encodeConfiguration = %d bytes, %v; want %d bytes as proto.Marshal writes them", len(got), err, len(want))
			}
			if _, err := encodeConfiguration(tc.version, tc.source, e, len(canon)+1); err == nil {
				t.Error("encodeConfiguration with the wrong size: no error")
			}
		})
	}
}

// encoded reports whether the Publisher holds an encoded resource.
func encoded(p *Publisher) bool {
	p.cache.mu.Lock()
	v := p.cache.current
	p.cache.mu.Unlock()
	if v == nil {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.res != nil
}

// TestEncodedOnlyWhileSubscribed: a published configuration is encoded
// when a stream subscribes, sent as it was published, and dropped once no
// stream is open; the next stream gets the same bytes again.
func TestEncodedOnlyWhileSubscribed(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pub := NewPublisher(nil, nil)
	pub.Register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })

	e := load(t, manyPolicies(200))
	canon, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	pub.Publish(context.Background(), e)
	if encoded(pub) {
		t.Fatal("encoded before any stream subscribed")
	}
	for round := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "gw"}, TypeUrl: TypeURL}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var got corsauthzv1.Configuration
		if err := proto.Unmarshal(resp.GetResources()[0].GetValue(), &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.GetContent(), canon) || got.GetVersion() != resp.GetVersionInfo() || got.GetSource() != PublishedSource {
			t.Errorf("round %d: got version %q source %q and %d bytes, want the canonical form's %d", round, got.GetVersion(), got.GetSource(), len(got.GetContent()), len(canon))
		}
		if !encoded(pub) {
			t.Errorf("round %d: not encoded while a stream is open", round)
		}
		cancel()
		deadline := time.Now().Add(10 * time.Second)
		for encoded(pub) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: still encoded 10 s after the last stream closed", round)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
