package xdsconfig

import (
	"bytes"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// wireFormCases are responses as the Publisher sends them, and others it
// must leave to the codec.
var wireFormCases = []struct {
	desc  string
	resp  *discoveryv3.DiscoveryResponse
	plain bool // wireForm must return nil
}{
	{desc: "as published", resp: &discoveryv3.DiscoveryResponse{VersionInfo: "abc", TypeUrl: TypeURL, Nonce: "1",
		Resources: []*anypb.Any{{TypeUrl: TypeURL, Value: []byte("\x0a\x03abc\x1a\x05hello")}}}},
	{desc: "empty value", resp: &discoveryv3.DiscoveryResponse{VersionInfo: "v", TypeUrl: TypeURL, Nonce: "2",
		Resources: []*anypb.Any{{TypeUrl: TypeURL}}}},
	{desc: "no version, no nonce", resp: &discoveryv3.DiscoveryResponse{TypeUrl: TypeURL,
		Resources: []*anypb.Any{{TypeUrl: TypeURL, Value: []byte{1, 2, 3}}}}},
	{desc: "large value (multi-byte lengths)", resp: &discoveryv3.DiscoveryResponse{VersionInfo: string(bytes.Repeat([]byte("v"), 300)), TypeUrl: TypeURL, Nonce: "123456",
		Resources: []*anypb.Any{{TypeUrl: TypeURL, Value: bytes.Repeat([]byte{0xff}, 1<<20)}}}},
	{desc: "two resources", plain: true, resp: &discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{{}, {}}}},
	{desc: "no resource", plain: true, resp: &discoveryv3.DiscoveryResponse{VersionInfo: "v"}},
	{desc: "canary", plain: true, resp: &discoveryv3.DiscoveryResponse{Canary: true, Resources: []*anypb.Any{{}}}},
	{desc: "control plane", plain: true, resp: &discoveryv3.DiscoveryResponse{ControlPlane: &corev3.ControlPlane{Identifier: "x"}, Resources: []*anypb.Any{{}}}},
}

// TestWireForm: the wire form parses as the response it stands for, and
// its large part is the resource's value itself, not a copy.
func TestWireForm(t *testing.T) {
	t.Parallel()
	for _, tc := range wireFormCases {
		t.Run(tc.desc, func(t *testing.T) {
			m := wireForm(tc.resp)
			if tc.plain {
				if m != nil {
					t.Fatal("wireForm took a response it must leave to the codec")
				}
				return
			}
			checkWireForm(t, tc.resp, m)
		})
	}
}

func checkWireForm(t *testing.T, resp *discoveryv3.DiscoveryResponse, m *encodedResponse) {
	t.Helper()
	if m == nil {
		t.Fatal("wireForm returned nil for a response the Publisher sends")
	}
	wire := m.WireForm()
	got := &discoveryv3.DiscoveryResponse{}
	if err := proto.Unmarshal(wire.Materialize(), got); err != nil {
		t.Fatalf("the wire form does not parse: %v", err)
	}
	if !proto.Equal(got, resp) {
		t.Fatalf("the wire form parses as %v, want %v", got, resp)
	}
	if v := resp.GetResources()[0].GetValue(); len(v) > 0 {
		last := wire[len(wire)-1].ReadOnlyData()
		if len(last) != len(v) || &last[0] != &v[0] {
			t.Error("the value is copied, not shared")
		}
	}
}

func FuzzWireForm(f *testing.F) {
	for _, tc := range wireFormCases {
		if tc.plain || len(tc.resp.GetResources()[0].GetValue()) > 1024 {
			continue
		}
		r := tc.resp.GetResources()[0]
		f.Add(tc.resp.GetVersionInfo(), tc.resp.GetTypeUrl(), tc.resp.GetNonce(), r.GetTypeUrl(), r.GetValue())
	}
	f.Fuzz(func(t *testing.T, version, typeURL, nonce, resType string, value []byte) {
		resp := &discoveryv3.DiscoveryResponse{VersionInfo: version, TypeUrl: typeURL, Nonce: nonce,
			Resources: []*anypb.Any{{TypeUrl: resType, Value: value}}}
		// Strings that are not UTF-8 do not marshal; neither would the
		// codec send them.
		if _, err := proto.Marshal(resp); err != nil {
			t.Skip()
		}
		checkWireForm(t, resp, wireForm(resp))
	})
}
