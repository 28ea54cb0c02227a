package server

import (
	"context"
	"runtime"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

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
// The answers are the ones Authz.Check gives, byte for byte (TestFastPath
// checks them over gRPC against Authz served the standard way), and the
// decision, metrics and logs are the same code: Authz.decide. Every other
// message of the server (health, reflection, the decision API) goes
// through the standard codec.
//
// With a unary interceptor installed (Options.GRPCServerOptions), Check is
// served the standard way, so that interceptors see the
// *authv3.CheckRequest and *authv3.CheckResponse they expect.
// Options.GRPCServerOptions must not force a codec of their own: it would
// replace wireCodec, which the fast path needs.

// wireCheck is the fast path's request message.
type wireCheck struct {
	r       policy.Request
	problem string               // readRequest's message when the request cannot be read
	typed   *authv3.CheckRequest // set when the request takes the typed path
}

// wireCodec is the server's codec: the fast path's messages are read and
// written here, any other message by the standard protobuf codec.
type wireCodec struct{ std encoding.CodecV2 }

var _ encoding.CodecV2 = wireCodec{}

func newWireCodec() wireCodec {
	return wireCodec{std: encoding.GetCodecV2(protocodec.Name)}
}

func (c wireCodec) Name() string { return protocodec.Name }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*wireResponse); ok {
		return r.bufferSlice(), nil
	}
	return c.std.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	in, ok := v.(*wireCheck)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	*in = wireCheck{}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		b = buf.ReadOnlyData()
	}
	var w wireRequest
	typed, problem, err := decodeCheck(b, &w, &in.r)
	if err != nil {
		// Not a CheckRequest. The standard codec says why in its own
		// words, so the caller gets the error the typed path gives; and
		// were it to read the message after all, the typed path serves it.
		m := &authv3.CheckRequest{}
		if err := c.std.Unmarshal(data, m); err != nil {
			return err
		}
		typed = m
	}
	in.typed, in.problem = typed, problem
	return nil
}

// fastPathServerOptions are the gRPC server options of the fast path: its
// codec, and stream workers. With workers, a call is served on a
// long-lived goroutine when one is free, instead of on a new goroutine
// whose stack grows on every call (runtime.morestack and copystack take
// 5-10% of the CPU in a profile under load without them).
func fastPathServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(newWireCodec()),
		grpc.NumStreamWorkers(streamWorkers()),
	}
}

// streamWorkers is the number of worker goroutines: with cmd/loadbench, a
// few per processor do as well as many; calls beyond them get a goroutine
// of their own, as without workers.
func streamWorkers() uint32 {
	return uint32(4 * runtime.GOMAXPROCS(0))
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

// registerAuthorization registers a as the server's ext_authz service, on
// the fast path. s must have been built with grpc.ForceServerCodecV2(newWireCodec()).
func registerAuthorization(s *grpc.Server, a *Authz) {
	s.RegisterService(&authorizationServiceDesc, a)
}

func checkHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	a := srv.(*Authz)
	if interceptor != nil {
		in := &authv3.CheckRequest{}
		if err := dec(in); err != nil {
			return nil, err
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
		return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
			return a.Check(ctx, req.(*authv3.CheckRequest))
		})
	}
	in := &wireCheck{}
	if err := dec(in); err != nil {
		return nil, err
	}
	return a.checkWire(ctx, in)
}

// checkWire is Check for a request read by the fast path.
func (a *Authz) checkWire(ctx context.Context, in *wireCheck) (any, error) {
	if in.typed != nil {
		resp, err := a.Check(ctx, in.typed)
		if err != nil {
			return nil, err
		}
		return resp, nil
	}
	start := time.Now()
	if in.problem != "" {
		return nil, a.refuseUnreadable(ctx, in.problem, start)
	}
	d, e, err := a.decide(ctx, &in.r, start)
	if err != nil {
		return nil, err
	}
	return a.fixed.answer(e, &d), nil
}
