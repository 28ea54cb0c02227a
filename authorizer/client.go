package authorizer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/corsauthz/corsauthz/policy"
)

// Limits on every call to an authorizer.
const (
	// MaxInFlight is how many calls one authorizer may have on the wire at
	// once: an HTTP authorizer's connections (HTTP/1.1 carries one call at
	// a time), a gRPC authorizer's streams. A call beyond it waits for a
	// free slot until its timeout, then fails.
	MaxInFlight = 256
	// MaxPending bounds the calls a Pool has waiting or in flight, all
	// authorizers together; each authorizer may hold MaxPending divided by
	// the number of authorizers (see Pool). A call past either bound is
	// Overloaded at once: with every authorizer hanging, the requests
	// waiting on them (and what the front ends hold for each) stay a
	// bounded number, far under the shipped 128 MiB, and the others get
	// their 503 without waiting.
	MaxPending = 1024
	// MaxBodyBytes bounds the body of an authorizer's answer (a denial's
	// body is sent to the browser); a longer one is an Error.
	MaxBodyBytes = 64 << 10
	// MaxAnswerBytes bounds a gRPC authorizer's CheckResponse.
	MaxAnswerBytes = 1 << 20
	// MaxAnswerHeaders bounds the headers of an answer: an HTTP answer's
	// header lines, a gRPC answer's header options, headers to remove and
	// query parameters together. An answer past it is an Error.
	MaxAnswerHeaders = 100
	// MaxAnswerHeaderBytes bounds the names and values of those headers
	// together (as net/http bounds an HTTP answer's header block).
	MaxAnswerHeaderBytes = 64 << 10
)

// Request is the request the gateway asked about, as an authorizer needs
// it. A front end that received a CheckRequest sets Check, or Raw with its
// wire form (the ext_authz fast path); a gRPC authorizer is sent that
// CheckRequest exactly as received, so no context extension or header it
// needs is lost. The HTTP fields are read from the CheckRequest when it is
// there and are needed otherwise.
type Request struct {
	Check *authv3.CheckRequest
	Raw   []byte

	Method, Scheme, Host string
	// Path is the path and query, as on the request line.
	Path string
	// Headers holds the request headers with lower-case names; repeated
	// headers joined with ",".
	Headers map[string]string
}

// ErrNoRequest is the error for a Request with nothing to send.
var ErrNoRequest = errors.New("authorizer: the request has neither a CheckRequest nor HTTP attributes")

// httpView returns method, scheme, host, path and headers of r, from its
// CheckRequest when it has one.
func (r *Request) httpView() (method, scheme, host, path string, headers map[string]string) {
	if r.Check != nil {
		h := r.Check.GetAttributes().GetRequest().GetHttp()
		headers = h.GetHeaders()
		if len(headers) == 0 {
			if raw := h.GetHeaderMap().GetHeaders(); len(raw) > 0 {
				headers = make(map[string]string, len(raw))
				for _, hv := range raw {
					k, v := strings.ToLower(hv.GetKey()), hv.GetValue()
					if rv := hv.GetRawValue(); len(rv) > 0 {
						v = string(rv)
					}
					if old, ok := headers[k]; ok {
						v = old + "," + v
					}
					headers[k] = v
				}
			}
		}
		return h.GetMethod(), h.GetScheme(), h.GetHost(), h.GetPath(), headers
	}
	return r.Method, r.Scheme, r.Host, r.Path, r.Headers
}

// Client asks one authorizer. Ask never returns a nil Answer and never
// outlives ctx or the authorizer's timeout, whichever ends first.
type Client interface {
	Ask(ctx context.Context, r *Request) *Answer
	// Config is the configuration the client was built from.
	Config() *policy.Authorizer
	// Close releases the client's connections; calls in flight fail.
	Close()
}

// New builds the client for a, without connecting: connections are made
// by the first calls and kept for the next. It reads no file: a static
// header's value is read when a call is made, a TLS certificate when a
// connection is, so that a file missing here fails the calls that need it
// (503) rather than the configuration.
func New(a policy.Authorizer) (Client, error) {
	switch {
	case a.HTTP != nil:
		return newHTTPClient(a)
	case a.GRPC != nil:
		return newGRPCClient(a)
	}
	return nil, fmt.Errorf("authorizer %q: neither http nor grpc", a.Name)
}

// slots bounds the calls in flight.
type slots chan struct{}

func (s slots) acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	default:
	}
	select {
	case s <- struct{}{}:
		if ctx.Err() != nil { // both were ready: a call past its deadline is not made
			<-s
			return fmt.Errorf("%d calls in flight already: %w", cap(s), context.Cause(ctx))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d calls in flight already: %w", cap(s), context.Cause(ctx))
	}
}

func (s slots) release() { <-s }

func failed(err error) *Answer { return &Answer{Result: Error, Err: err} }

// ErrOverloaded is the error of an Overloaded answer.
var ErrOverloaded = errors.New("overloaded: too many authorizer calls waiting or in flight")

// late returns an error when ctx's deadline has passed. An answer read
// after it is a timeout, even though it arrived before the context's
// timer fired (timers can fire late on a busy machine): the timeout is
// what the gateway's own ext_authz timeout is set against.
func late(ctx context.Context) error {
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return fmt.Errorf("the answer came after the deadline: %w", deadlineCause(ctx))
	}
	return nil
}

func deadlineCause(ctx context.Context) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return context.DeadlineExceeded
}
