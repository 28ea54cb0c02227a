package middleware

import (
	"bufio"
	"net"
	"net/http"
	"strings"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/policy"
)

// corsWriter puts the CORS headers on the wrapped handler's response when
// it is written, in place of the handler's own Access-Control-* headers.
// It holds the local outcome, or the headers Decide sent (remote).
//
// One is made per request and never reused: a handler that writes after
// it returns (a goroutine it left behind, a common bug) writes to its own
// request's response, as with plain net/http, never into another's.
type corsWriter struct {
	http.ResponseWriter
	outcome decision.Outcome
	remote  []policy.Header // remote mode: the headers Decide or Check gave
	extra   []policy.Header // a gRPC authorizer's response headers
	written bool
}

func (cw *corsWriter) serve(r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	err := next(cw, r)
	cw.finish() // a handler that wrote nothing still gets its 200 with the headers
	// Trailers are sent after the handler returns: none of the handler's
	// may be an Access-Control-* header.
	removeAccessControlTrailers(cw.ResponseWriter.Header())
	return err
}

func (cw *corsWriter) finish() {
	if cw.written {
		return
	}
	cw.written = true
	h := cw.ResponseWriter.Header()
	removeAccessControl(h)
	removeAccessControlTrailers(h)
	headers := cw.remote
	if headers == nil {
		var buf [policy.MaxHeaders]policy.Header
		headers = cw.outcome.AppendHeaders(buf[:0])
	}
	applyHeaders(h, cw.extra)
	applyHeaders(h, headers)
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

// removeAccessControlTrailers deletes trailers named Access-Control-*:
// both those declared in a Trailer header and those set with
// http.TrailerPrefix.
func removeAccessControlTrailers(h http.Header) {
	for name := range h {
		if rest, ok := strings.CutPrefix(name, http.TrailerPrefix); ok && isAccessControl(rest) {
			delete(h, name)
		}
	}
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
