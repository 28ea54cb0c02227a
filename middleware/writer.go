package middleware

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/policy"
)

// corsWriter puts the CORS headers on the wrapped handler's response when
// it is written, in place of the handler's own Access-Control-* headers.
//
// It is the handler's ResponseWriter for one request: a small handle, made
// per request, on a writerState taken from a pool for the request and
// given back when the handler returns. A handler that writes after it
// returned (a goroutine it left behind, a common bug) holds a handle whose
// generation is no longer its state's: its calls go straight to its own
// request's ResponseWriter, as with plain net/http, never through a state
// another request now uses. (The middleware once pooled the whole writer:
// 4 of 15 responses then carried another request's bytes.)
type corsWriter struct {
	st  *writerState
	gen uint64
	w   http.ResponseWriter
}

// writerState is what a corsWriter needs of the request's outcome while
// the handler runs. Nothing in it reaches a response's header map: the
// values put there are immutable (the policy's shared ones, the request's
// own, or allocated for the response), so a state reused by the next
// request cannot change what an earlier response says, even one an outer
// writer has not sent yet.
type writerState struct {
	// gen counts the requests the state served; active, the calls of a
	// handle in progress. A handle's call first adds to active and then
	// checks gen; release bumps gen and then reuses the state only when no
	// call is in progress (a late call that passed the check keeps the
	// state from the pool: it is left to the garbage collector).
	gen    atomic.Uint64
	active atomic.Int32

	w http.ResponseWriter
	// cors are the CORS decision's headers (local mode), and allowed the
	// outcome of an authorizer that allowed the request (nil when none
	// was asked), whose headers are then the response's instead (as
	// decision.Outcome.AppendHeaders says).
	cors    policy.ResponseHeaders
	allowed *authorizer.Outcome
	// extra are remote mode's headers, the ones Decide or Check gave.
	extra []policy.Header
	// noPolicy, set for a request no policy selected, warns (rate-limited)
	// when the handler's own Access-Control-* headers are removed, so
	// that a host missing from corsauthz's configuration is not silent.
	noPolicy *Middleware
	r        *http.Request
	written  bool
	// keys is the size of the header map when finish was done with it.
	keys int
}

var writerStates = sync.Pool{New: func() any { return new(writerState) }}

// newWriter returns the writer for a request that goes on to the handler,
// with a state from the pool; serve gives the state back.
func newWriter(w http.ResponseWriter, r *http.Request) *corsWriter {
	st := writerStates.Get().(*writerState)
	st.w, st.r, st.keys = w, r, -1
	return &corsWriter{st: st, gen: st.gen.Load(), w: w}
}

// localWriter is the corsWriter of out, a Pass.
func localWriter(w http.ResponseWriter, r *http.Request, out *decision.Outcome) *corsWriter {
	cw := newWriter(w, r)
	cw.st.cors, cw.st.allowed = out.Decision.ResponseHeaders(), out.Upstream()
	return cw
}

// release ends the request's use of the state: a call through a handle
// from now on goes to its own ResponseWriter.
func (st *writerState) release() {
	st.gen.Add(1)
	if st.active.Load() != 0 {
		return // a late call is using it: not reused
	}
	st.w, st.cors, st.allowed, st.extra, st.noPolicy, st.r, st.written = nil, policy.ResponseHeaders{}, nil, nil, nil, nil, false
	writerStates.Put(st)
}

// enter returns the handle's state for a call, or nil when its request
// is over; a non-nil state must be left with leave.
func (cw *corsWriter) enter() *writerState {
	st := cw.st
	st.active.Add(1)
	if st.gen.Load() != cw.gen {
		st.active.Add(-1)
		return nil
	}
	return st
}

func (st *writerState) leave() { st.active.Add(-1) }

func (cw *corsWriter) serve(r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	err := next(cw, r)
	st := cw.st
	st.finish() // a handler that wrote nothing still gets its 200 with the headers
	// Trailers are sent after the handler returns: none of the handler's
	// may be an Access-Control-* header. (A trailer declared in the
	// Trailer header is declared when the headers are written: finish
	// took care of those.) Only a header map that changed size since finish
	// walked it is walked again: walking a map is the largest part of
	// the writer's cost. (What escapes: a handler that deletes a header
	// after writing, which changes nothing sent, and adds the same number
	// of Access-Control-* trailers; browsers read no CORS header from
	// trailers.)
	if h := cw.w.Header(); len(h) != st.keys {
		for name := range h {
			if isAccessControlTrailer(name) {
				delete(h, name)
			}
		}
	}
	st.release()
	return err
}

func (st *writerState) finish() {
	if st.written {
		return
	}
	st.written = true
	h := st.w.Header()
	if removeAccessControl(h) && st.noPolicy != nil {
		st.noPolicy.warnNoPolicy(st.r)
	}
	applyHeaders(h, st.extra)
	if st.allowed != nil {
		// The authorizer's own response headers, then corsauthz's.
		applyHeaders(h, st.allowed.ResponseHeaders)
		applyHeaders(h, st.allowed.Headers)
	} else {
		setCORS(h, &st.cors, st.r.Header)
	}
	st.keys = len(h)
}

// setCORS puts a decision's headers in h without allocating for the usual
// ones: the policy's shared values, and for a value that echoes the
// request's (the origin, the requested method and headers) the request's
// own slice, its capacity cut to one so that an append copies. Append
// headers (Vary) add to the value already there, as Envoy does.
func setCORS(h http.Header, cors *policy.ResponseHeaders, req http.Header) {
	if v := cors.AllowOrigin(); v != "" {
		h[policy.HeaderAllowOrigin] = echo(v, req[policy.HeaderOrigin])
	}
	if v := cors.AllowMethods(); v != "" {
		h[policy.HeaderAllowMethods] = echo(v, req[policy.HeaderRequestMethod])
	}
	if v := cors.AllowHeaders(); v != "" {
		h[policy.HeaderAllowHeaders] = echo(v, req[policy.HeaderRequestHeaders])
	}
	setFixed(h, cors.Fixed())
}

// setFixed puts a policy's fixed headers in h, with their shared values.
func setFixed(h http.Header, l *policy.HeaderList) {
	values := l.Values()
	for i, hd := range l.Headers() {
		if hd.Append {
			if old := h[hd.Name]; len(old) > 0 {
				h[hd.Name] = append(old, hd.Value)
				continue
			}
		}
		h[hd.Name] = values[i]
	}
}

// echo is v as a header value: the request's slice when it holds v alone.
func echo(v string, req []string) []string {
	if len(req) == 1 && req[0] == v {
		return req[:1:1]
	}
	return []string{v}
}

// Header is the response's header map.
func (cw *corsWriter) Header() http.Header { return cw.w.Header() }

func (cw *corsWriter) WriteHeader(code int) {
	if st := cw.enter(); st != nil {
		if code >= 200 || code == http.StatusSwitchingProtocols {
			st.finish()
		} else {
			// An informational response (103 Early Hints) is sent with the
			// header map as it is: the handler's own CORS headers stay out
			// of it, as they stay out of the final answer.
			removeAccessControl(cw.w.Header())
		}
		st.leave()
	}
	cw.w.WriteHeader(code)
}

func (cw *corsWriter) Write(b []byte) (int, error) {
	if st := cw.enter(); st != nil {
		st.finish()
		st.leave()
	}
	return cw.w.Write(b)
}

// Flush sends the headers, if not yet sent, and flushes.
func (cw *corsWriter) Flush() {
	if st := cw.enter(); st != nil {
		st.finish()
		st.leave()
	}
	_ = http.NewResponseController(cw.w).Flush()
}

// Hijack lets a handler that asserts w.(http.Hijacker) take over the
// connection (a WebSocket upgrade): what it writes then is its own, as
// with any middleware.
func (cw *corsWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if st := cw.enter(); st != nil {
		st.written = true
		st.leave()
	}
	return http.NewResponseController(cw.w).Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer for the
// features this wrapper does not have itself (deadlines, full duplex).
func (cw *corsWriter) Unwrap() http.ResponseWriter { return cw.w }

// removeAccessControlTrailers removes the Access-Control-* trailers a
// Trailer header declares.
func removeAccessControlTrailers(h http.Header) {
	declared := h["Trailer"]
	if len(declared) == 0 {
		return
	}
	kept := declared[:0:0]
	for _, line := range declared {
		var names []string
		for n := range strings.SplitSeq(line, ",") {
			if n = strings.TrimSpace(n); n != "" && !isAccessControl(n) {
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			kept = append(kept, strings.Join(names, ", "))
		}
	}
	if len(kept) == 0 {
		delete(h, "Trailer")
		return
	}
	h["Trailer"] = kept
}
