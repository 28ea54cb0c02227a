package authorizer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corsauthz/corsauthz/internal/tracing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/corsauthz/corsauthz/policy"
)

// grpcWindow is the fixed HTTP/2 flow-control window of a gRPC authorizer's
// connection.
const grpcWindow = 1 << 20

// grpcClient asks an envoy.service.auth.v3.Authorization server over one
// grpc.ClientConn (HTTP/2: every call in flight shares it), in plain text
// or with TLS, sending the static headers as metadata.
//
// One connection, not one per processor: spreading the calls over two
// took 7-12% less of the client's CPU in a benchmark of the client alone,
// but no less of corsauthz's CPU per chained Check under cmd/loadbench
// (1.17-1.28 against 1.12-1.17 in the same runs; docs/performance.md), and
// four took more (each connection's writes are batched less).
type grpcClient struct {
	cfg    policy.Authorizer
	slots  slots
	static staticHeaders

	// The ClientConn is made by the first call (grpc.NewClient starts
	// goroutines of its own, so a client never asked costs none) and kept
	// until Close.
	mu     sync.Mutex
	conn   *grpc.ClientConn
	closed bool
	ready  atomic.Pointer[grpc.ClientConn] // conn once made, read without the lock
}

func newGRPCClient(a policy.Authorizer) (*grpcClient, error) {
	return &grpcClient{cfg: a, slots: make(slots, MaxInFlight), static: newStaticHeaders(a.StaticHeaders)}, nil
}

// transportCredentials are plain text, or TLS read from the configured
// files at each handshake.
func (c *grpcClient) transportCredentials() credentials.TransportCredentials {
	if c.cfg.GRPC.TLS == nil {
		return insecure.NewCredentials()
	}
	return &fileTLS{cfg: *c.cfg.GRPC.TLS}
}

// clientConn returns the ClientConn, making it on the first call.
func (c *grpcClient) clientConn() (*grpc.ClientConn, error) {
	if conn := c.ready.Load(); conn != nil {
		return conn, nil // after Close, its calls fail on their own
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("authorizer client closed")
	}
	if c.conn != nil {
		return c.conn, nil
	}
	conn, err := grpc.NewClient(c.cfg.GRPC.Address,
		grpc.WithTransportCredentials(c.transportCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		// Fixed flow-control windows turn off grpc-go's bandwidth-delay
		// probing, whose pings cost CPU on every busy connection; Check
		// messages are small, so a fixed window never limits them.
		grpc.WithInitialWindowSize(grpcWindow),
		grpc.WithInitialConnWindowSize(grpcWindow),
		// A Check is never retried by corsauthz (a failure is a 503 for the
		// gateway to retry), so the client keeps no copy of each request
		// for replay.
		grpc.WithDisableRetry(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxAnswerBytes), grpc.ForceCodecV2(rawCodec{})),
	)
	if err != nil {
		return nil, fmt.Errorf("authorizer %q: %w", c.cfg.Name, err)
	}
	c.conn = conn
	c.ready.Store(conn)
	return conn, nil
}

func (c *grpcClient) Config() *policy.Authorizer { return &c.cfg }

func (c *grpcClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		c.conn.Close()
	}
}

// Ask implements Client: it sends the CheckRequest as received, its wire
// bytes unchanged when the front end has them, with the static headers
// as metadata.
func (c *grpcClient) Ask(ctx context.Context, r *Request) *Answer {
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.GRPC.Timeout, errTimeout(c.cfg.GRPC.Timeout))
	defer cancel()

	var in any
	switch {
	case r.Raw != nil:
		in = rawMessage(r.Raw)
	case r.Check != nil:
		in = r.Check
	case r.Method != "":
		in = checkRequestOf(r)
	default:
		return failed(ErrNoRequest)
	}
	if len(c.static) > 0 {
		md := make([]string, 0, 2*len(c.static))
		if err := c.static.each(func(name, value string) { md = append(md, name, value) }); err != nil {
			return failed(err)
		}
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	ctx = tracing.ToMetadata(ctx) // the call's span, when tracing
	conn, err := c.clientConn()
	if err != nil {
		return failed(err)
	}
	if err := c.slots.acquire(ctx); err != nil {
		return failed(err)
	}
	defer c.slots.release()
	resp := &authv3.CheckResponse{}
	err = conn.Invoke(ctx, authv3.Authorization_Check_FullMethodName, in, resp)
	if err != nil {
		if c := context.Cause(ctx); c != nil && status.Code(err) == codes.DeadlineExceeded {
			err = &causeError{cause: c, err: err}
		}
		return failed(err)
	}
	if err := late(ctx); err != nil {
		return failed(err)
	}
	return answerOfCheck(resp)
}

// answerOfCheck reads a gRPC authorizer's CheckResponse. An answer with
// more headers than MaxAnswerHeaders, more header bytes than
// MaxAnswerHeaderBytes or a body longer than MaxBodyBytes is an Error.
func answerOfCheck(resp *authv3.CheckResponse) *Answer {
	if err := checkAnswerSize(resp); err != nil {
		return failed(err)
	}
	a := &Answer{Check: resp}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		a.Result = Allow // as Envoy: OK passes, with the ok_response if any
		return a
	}
	a.Result = Deny
	deniedFromGRPC(resp, a)
	return a
}

// checkAnswerSize counts what an answer asks to send.
func checkAnswerSize(resp *authv3.CheckResponse) error {
	n, size := 0, 0
	count := func(os []*corev3.HeaderValueOption) {
		n += len(os)
		for _, o := range os {
			size += len(o.GetHeader().GetKey()) + len(o.GetHeader().GetValue()) + len(o.GetHeader().GetRawValue())
		}
	}
	if ok := resp.GetOkResponse(); ok != nil {
		count(ok.GetHeaders())
		count(ok.GetResponseHeadersToAdd())
		n += len(ok.GetHeadersToRemove()) + len(ok.GetQueryParametersToSet()) + len(ok.GetQueryParametersToRemove())
		for _, h := range ok.GetHeadersToRemove() {
			size += len(h)
		}
	}
	d := resp.GetDeniedResponse()
	count(d.GetHeaders())
	switch {
	case n > MaxAnswerHeaders:
		return fmt.Errorf("the answer has %d headers, headers to remove and query parameters, more than %d", n, MaxAnswerHeaders)
	case size > MaxAnswerHeaderBytes:
		return fmt.Errorf("the answer's headers hold %d bytes, more than %d", size, MaxAnswerHeaderBytes)
	case len(d.GetBody()) > MaxBodyBytes:
		return fmt.Errorf("the denial's body is longer than %d bytes", MaxBodyBytes)
	}
	return nil
}

// checkRequestOf builds the CheckRequest of a request that came without
// one (the HTTP listener), as Envoy fills it.
func checkRequestOf(r *Request) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{
				Method:  r.Method,
				Scheme:  r.Scheme,
				Host:    r.Host,
				Path:    r.Path,
				Headers: r.Headers,
			},
		},
	}}
}

// rawMessage is a serialized CheckRequest, sent as it is.
type rawMessage []byte

// rawCodec sends a rawMessage's bytes unchanged and everything else (the
// typed CheckRequest, the CheckResponse) with the standard codec.
type rawCodec struct{}

var stdCodec = encoding.GetCodecV2(protocodec.Name)

func (rawCodec) Name() string { return protocodec.Name }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	return stdCodec.Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error { return stdCodec.Unmarshal(data, v) }
