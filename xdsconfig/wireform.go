package xdsconfig

import (
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// encodedResponse is a DiscoveryResponse with its wire form: a few bytes
// of its own (version, type, nonce, the resource's header) and the
// resource's encoded value, shared with every other stream sent the same
// version.
//
// A gRPC codec that knows the WireForm method sends those buffers as they
// are, without copying the value: corsauthz's server codec does (see
// package extauthz), and then a stream that does not read holds a few
// hundred bytes of its own instead of a copy of the configuration. Any
// other codec sees a *DiscoveryResponse (the embedded message) and
// marshals it as usual.
type encodedResponse struct {
	*discoveryv3.DiscoveryResponse
	wire mem.BufferSlice
}

// WireForm returns the message's wire form. The buffers are never
// returned to a pool: Free is a no-op on them, and the shared one lives as
// long as a stream still sends it.
func (m *encodedResponse) WireForm() mem.BufferSlice { return m.wire }

// wireForm returns r with its wire form, or nil when r holds anything
// besides a version, a type, a nonce and one resource (which the Publisher
// never sends; it then goes through the codec as usual).
//
// Fields may come in any order on the wire and parsers merge them, so the
// resource, the large part, comes last and is not copied: the head is
// version_info (1), type_url (4), nonce (5), then resources (2)'s tag and
// length and the Any's type_url (1) and value (2) headers.
func wireForm(r *discoveryv3.DiscoveryResponse) *encodedResponse {
	if len(r.GetResources()) != 1 || r.GetCanary() || r.GetControlPlane() != nil || len(r.ProtoReflect().GetUnknown()) > 0 {
		return nil
	}
	res := r.GetResources()[0]
	if len(res.ProtoReflect().GetUnknown()) > 0 {
		return nil
	}
	value := res.GetValue()
	anyHead := make([]byte, 0, 16+len(res.GetTypeUrl()))
	if res.GetTypeUrl() != "" {
		anyHead = protowire.AppendTag(anyHead, 1, protowire.BytesType)
		anyHead = protowire.AppendString(anyHead, res.GetTypeUrl())
	}
	if len(value) > 0 {
		anyHead = protowire.AppendTag(anyHead, 2, protowire.BytesType)
		anyHead = protowire.AppendVarint(anyHead, uint64(len(value)))
	}
	head := make([]byte, 0, 32+len(r.GetVersionInfo())+len(r.GetTypeUrl())+len(r.GetNonce())+len(anyHead))
	for _, f := range []struct {
		num protowire.Number
		s   string
	}{{1, r.GetVersionInfo()}, {4, r.GetTypeUrl()}, {5, r.GetNonce()}} {
		if f.s != "" {
			head = protowire.AppendTag(head, f.num, protowire.BytesType)
			head = protowire.AppendString(head, f.s)
		}
	}
	head = protowire.AppendTag(head, 2, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(len(anyHead)+len(value)))
	head = append(head, anyHead...)
	wire := mem.BufferSlice{mem.SliceBuffer(head)}
	if len(value) > 0 {
		wire = append(wire, mem.SliceBuffer(value))
	}
	return &encodedResponse{DiscoveryResponse: r, wire: wire}
}
