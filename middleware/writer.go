package middleware

import (
	"bufio"
	"net"
	"net/http"
	"strings"

	"github.com/corsauthz/corsauthz/authorizer"
	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/policy"
)

// corsWriter puts the CORS headers on the wrapped handler's response when
// it is written, in place of the handler's own Access-Control-* headers.
//
// One is made per request and never reused: a handler that writes after
// it returns (a goroutine it left behind, a common bug) writes to its own
// request's response, as with plain net/http, never into another's.
//
// It is allocated for every request that goes on to the handler, so it
// holds what it needs of the outcome and no more, and the values of the
// headers it sets are in it too (one allocation, not two).
type corsWriter struct {
	http.ResponseWriter
	// cors are the CORS decision's headers (local mode), and allowed the
	// outcome of an authorizer that allowed the request (nil when none
	// was asked), whose headers are then the response's instead (as
	// decision.Outcome.AppendHeaders says).
	cors    policy.ResponseHeaders
	allowed *authorizer.Outcome
	// extra are headers applied first: in remote mode the ones Decide or
	// Check gave (and then the only ones), in local mode a gRPC
	// authorizer's response headers.
	extra []policy.Header
	// noPolicy, set for a request no policy selected, warns (rate-limited)
	// when the handler's own Access-Control-* headers are removed, so
	// that a host missing from corsauthz's configuration is not silent.
	noPolicy func()
	written  bool
	values   [4]string // backing for the values set (see applyHeaders)
}

// localWriter is the corsWriter of out, a Pass.
func localWriter(w http.ResponseWriter, out *decision.Outcome) *corsWriter {
	return &corsWriter{ResponseWriter: w, cors: out.Decision.ResponseHeaders(), allowed: out.Upstream()}
}

func (cw *corsWriter) serve(r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	err := next(cw, r)
	cw.finish() // a handler that wrote nothing still gets its 200 with the headers
	// Trailers are sent after the handler returns: none of the handler's
	// may be an Access-Control-* header. (A trailer declared in the
	// Trailer header is declared when the headers are written: finish
	// took care of those.)
	h := cw.ResponseWriter.Header()
	for name := range h {
		if len(name) > len(http.TrailerPrefix) && name[0] == 'T' {
			if rest, ok := strings.CutPrefix(name, http.TrailerPrefix); ok && isAccessControl(rest) {
				delete(h, name)
			}
		}
	}
	return err
}

func (cw *corsWriter) finish() {
	if cw.written {
		return
	}
	cw.written = true
	h := cw.ResponseWriter.Header()
	if removeAccessControl(h) && cw.noPolicy != nil {
		cw.noPolicy()
	}
	values := applyHeaders(h, cw.extra, cw.values[:0])
	var buf [policy.MaxHeaders]policy.Header
	headers := buf[:0]
	if cw.allowed != nil {
		headers = cw.allowed.Headers
	} else {
		headers = cw.cors.Append(headers)
	}
	applyHeaders(h, headers, values)
}

func (cw *corsWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		cw.finish()
	} else {
		// An informational response (103 Early Hints) is sent with the
		// header map as it is: the handler's own CORS headers stay out
		// of it, as they stay out of the final answer.
		removeAccessControl(cw.ResponseWriter.Header())
	}
	cw.ResponseWriter.WriteHeader(code)
}

func (cw *corsWriter) Write(b []byte) (int, error) {
	cw.finish()
	return cw.ResponseWriter.Write(b)
}

// Flush sends the headers, if not yet sent, and flushes.
func (cw *corsWriter) Flush() {
	cw.finish()
	_ = http.NewResponseController(cw.ResponseWriter).Flush()
}

// Hijack lets a handler that asserts w.(http.Hijacker) take over the
// connection (a WebSocket upgrade): what it writes then is its own, as
// with any middleware.
func (cw *corsWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	cw.written = true
	return http.NewResponseController(cw.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer for the
// features this wrapper does not have itself (deadlines, full duplex).
func (cw *corsWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

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
