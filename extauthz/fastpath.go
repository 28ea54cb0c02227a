package extauthz

import (
	"bytes"
	"context"
	"runtime"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/internal/grpcfail"
	"github.com/corsauthz/corsauthz/internal/tracing"
	"github.com/corsauthz/corsauthz/policy"
)

// The ext_authz fast path. A Check served the standard way costs more in
// protobuf than in deciding: the codec builds the whole CheckRequest (a map
// of every request header, a string for each value, the peers, the
// timestamp) for the few values CORS reads, and reflects over the response
// to serialize it. The server registers the Authorization service with its
// own handler (checkHandler), and its codec (wireCodec)
//
//   - reads the CheckRequest straight from its wire form into a wireCheck
//     (wire.go): the values CORS reads, copied out in one allocation, every
//     other field checked as proto.Unmarshal checks it but not built;
//   - sends a wireResponse: the CheckResponse for the decision, serialized
//     directly (wire_response.go), or, for an answer that depends only on
//     the policy (a request without Origin above all), serialized once per
//     policy and shared (fixedAnswers).
//
// The answers are the ones Server.Check gives, byte for byte (TestFastPath
// checks them over gRPC against Check served the standard way), and the
// decision, the authorizer call, metrics and logs are the same code: the
// decision core's. Every other
// message of the server (health, reflection, the decision API) goes
// through the standard codec.
//
// With a unary interceptor installed (Options.GRPCServerOptions), Check is
// served the standard way, so that interceptors see the
// *authv3.CheckRequest and *authv3.CheckResponse they expect.
// A gRPC server's options must not force a codec of their own: it would
// replace wireCodec, which the fast path needs.

// wireCheck is the fast path's request message.
type wireCheck struct {
	r       policy.Request
	problem string // readRequest's message when the request cannot be read
	// typed, when set before decoding (an interceptor is installed), gets
	// the message built, only for a request within the limits; also set
	// when the standard codec reads a message the fast path could not.
	typed *authv3.CheckRequest
	// raw is a copy of the wire bytes of a request within the limits,
	// kept while the configuration has authorizers: a gRPC authorizer is
	// sent it unchanged, an HTTP one gets it decoded in full.
	raw []byte
}

// AuthorizerRequest implements decision.Source.
func (in *wireCheck) AuthorizerRequest(kind string) *authorizer.Request {
	if in.raw == nil {
		// Read before the configuration with authorizers came in force:
		// nothing to send, so the request fails closed.
		return nil
	}
	if kind == "http" {
		// An HTTP authorizer needs the request's headers, which the
		// fast path did not read: decode the message in full.
		m := &authv3.CheckRequest{}
		if err := proto.Unmarshal(in.raw, m); err != nil {
			return nil
		}
		return &authorizer.Request{Check: m}
	}
	return &authorizer.Request{Raw: in.raw}
}

// wireCodec is the server's codec: the fast path's messages are read and
// written here, any other message by the standard protobuf codec. A
// message that does not parse is logged (rate-limited) and counted by the
// core.
type wireCodec struct {
	std  encoding.CodecV2
	core *decision.Core
}

var _ encoding.CodecV2 = wireCodec{}

func newWireCodec(core *decision.Core) wireCodec {
	return wireCodec{std: encoding.GetCodecV2(protocodec.Name), core: core}
}

// maxRedecodeLen bounds the malformed CheckRequests the standard codec
// reads again to say what is wrong in its own words: its cost grows with
// what it builds before it fails (for 80,000 tiny headers, 53 MB), so a
// larger message gets the fast path's words instead, at the cost of one
// read (docs/operations-and-limits.md).
const maxRedecodeLen = 16 << 10

func (c wireCodec) Name() string { return protocodec.Name }

// wireFormer is a message that already has its wire form: the xDS
// publisher's responses (package xdsconfig), whose encoded configuration
// every stream shares. Its buffers are sent as they are, not copied.
type wireFormer interface{ WireForm() mem.BufferSlice }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch r := v.(type) {
	case *wireResponse:
		return r.bufferSlice(), nil
	case wireFormer:
		return r.WireForm(), nil
	}
	return c.std.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	in, ok := v.(*wireCheck)
	if !ok {
		if err := c.std.Unmarshal(data, v); err != nil {
			c.core.Malformed(data.Len(), err)
			return err
		}
		return nil
	}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		b = buf.ReadOnlyData()
	}
	var w wireRequest
	problem, err := decodeCheck(b, &w, &in.r)
	if err != nil {
		c.core.Malformed(len(b), err)
		if len(b) > maxRedecodeLen {
			return err
		}
		// Not a CheckRequest. The standard codec says why in its own
		// words, so the caller gets the error the typed path gives; and
		// were it to read the message after all, the typed path serves it.
		m := &authv3.CheckRequest{}
		if err := c.std.Unmarshal(data, m); err != nil {
			return err
		}
		in.typed = m
		return nil
	}
	in.problem = problem
	if problem != "" {
		// Refused for size: nothing is built or copied.
		return nil
	}
	if in.typed != nil {
		return c.std.Unmarshal(data, in.typed)
	}
	if c.core.KeepRequests() {
		in.raw = bytes.Clone(b)
	}
	return nil
}

// ServerOptions are the gRPC server options of the fast path: its codec,
// and stream workers. With workers, a call is served on a long-lived
// goroutine when one is free, instead of on a new goroutine whose stack
// grows on every call (runtime.morestack and copystack take 5-10% of the
// CPU in a profile under load without them). A server that registers a
// Server with Register must be built with them.
func ServerOptions(core *decision.Core) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(newWireCodec(core)),
		grpc.NumStreamWorkers(streamWorkers()),
	}
}

// streamWorkers is the number of worker goroutines: with cmd/loadbench, a
// few per processor do as well as many while each call is decided at once;
// calls beyond them get a goroutine of their own, as without workers. A
// call that asks an authorizer holds its worker until the answer comes, so
// there are enough for that many calls in flight: otherwise each such call
// runs on a new goroutine whose stack grows through the gRPC client
// (runtime.newstack was 15% of a chained Check's CPU with 4 per processor).
func streamWorkers() uint32 {
	return uint32(32 * runtime.GOMAXPROCS(0))
}

// authorizationServiceDesc is authv3.Authorization_ServiceDesc with the
// fast path's handler for Check.
var authorizationServiceDesc = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: authv3.Authorization_ServiceDesc.HandlerType,
	Methods: []grpc.MethodDesc{{
		MethodName: "Check",
		Handler:    checkHandler,
	}},
	Streams:  []grpc.StreamDesc{},
	Metadata: authv3.Authorization_ServiceDesc.Metadata,
}

// Register registers s as g's ext_authz service, on the fast path. g must
// have been built with ServerOptions(core) for s's core.
func Register(g *grpc.Server, s *Server) {
	g.RegisterService(&authorizationServiceDesc, s)
}

func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*Server)
	if interceptor != nil {
		// The message is built only within the limits: a request past
		// one is refused here, without reaching the interceptors.
		in := &wireCheck{typed: &authv3.CheckRequest{}}
		if err := dec(in); err != nil {
			return nil, err
		}
		if in.problem != "" {
			return nil, s.refuse(ctx, in.problem)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
		return interceptor(ctx, in.typed, info, func(ctx context.Context, req any) (any, error) {
			return s.Check(ctx, req.(*authv3.CheckRequest))
		})
	}
	in := &wireCheck{}
	if err := dec(in); err != nil {
		return nil, err
	}
	return s.checkWire(ctx, in)
}

// checkWire is Check for a request read by the fast path.
func (s *Server) checkWire(ctx context.Context, in *wireCheck) (any, error) {
	if in.typed != nil {
		resp, err := s.Check(ctx, in.typed)
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	if in.problem != "" {
		return nil, s.refuse(ctx, in.problem)
	}
	if s.core.Tracing() {
		ctx = tracing.FromMetadata(ctx) // Envoy's span, from the call's metadata
	}
	out := s.core.Decide(ctx, decision.FrontEndExtAuthz, &in.r, in)
	switch {
	case out.Action == decision.Fail:
		return nil, grpcfail.Error(out.Failure)
	case out.Plain(), out.Action == decision.Pass && addsNothing(out.Upstream()):
		// The answer is the CORS decision's alone.
		return s.fixed.answer(&out.Decision, out.Engine), nil
	}
	resp, err := checkResponse(&out)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// addsNothing reports whether an authorizer's allow asks nothing of the
// request going upstream: its answer is then the decision's alone, sent as
// the fast path sends a plain decision.
func addsNothing(up *authorizer.Outcome) bool {
	return up != nil && up.OK == nil && up.DynamicMetadata == nil &&
		len(up.RequestHeaders) == 0 && len(up.RemoveRequestHeaders) == 0
}
