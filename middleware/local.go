package middleware

import (
	"errors"
	"net/http"
	"sync"

	"github.com/corsauthz/corsauthz/policy"
)

// errNoConfiguration is why a request in local mode is answered 503 before
// the first configuration arrives.
var errNoConfiguration = errors.New("no configuration received from corsauthz yet")

func (m *Middleware) serveLocal(w http.ResponseWriter, r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	e := m.sub.Engine()
	if e == nil {
		m.failClosed(w, r, errNoConfiguration)
		return nil
	}
	req := m.request(r)
	d, err := e.Decide(&req)
	if err != nil { // a policy name the configuration does not have
		m.failClosed(w, r, err)
		return nil
	}
	if d.ReportOnly {
		d = policy.Decision{} // decided, but changes nothing
	}
	if d.Direct() {
		var buf [policy.MaxHeaders]policy.Header
		respond(w, d.Status, d.AppendHeaders(buf[:0]))
		return nil
	}
	cw := newCORSWriter(w)
	cw.decision = d
	return cw.serve(r, next)
}

// corsWriters are reused: net/http forbids using a ResponseWriter after
// ServeHTTP returns, so one is free again once serve returns, and pooling
// it takes its allocation off every request.
var corsWriters = sync.Pool{New: func() any { return new(corsWriter) }}

func newCORSWriter(w http.ResponseWriter) *corsWriter {
	cw := corsWriters.Get().(*corsWriter)
	cw.ResponseWriter = w
	return cw
}

// corsWriter puts the CORS headers on the wrapped handler's response when
// it is written, in place of the handler's own Access-Control-* headers.
// It holds the local Decision, or the headers Decide sent (remote).
type corsWriter struct {
	http.ResponseWriter
	decision policy.Decision
	remote   []policy.Header
	written  bool
}

func (cw *corsWriter) serve(r *http.Request, next func(http.ResponseWriter, *http.Request) error) error {
	err := next(cw, r)
	cw.finish() // a handler that wrote nothing still gets its 200 with the headers
	*cw = corsWriter{}
	corsWriters.Put(cw)
	return err
}

func (cw *corsWriter) finish() {
	if cw.written {
		return
	}
	cw.written = true
	h := cw.ResponseWriter.Header()
	removeAccessControl(h)
	headers := cw.remote
	if headers == nil {
		var buf [policy.MaxHeaders]policy.Header
		headers = cw.decision.AppendHeaders(buf[:0])
	}
	applyHeaders(h, headers)
}

func (cw *corsWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		cw.finish() // 1xx informational responses are not the answer
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

// Unwrap lets http.ResponseController reach the underlying writer.
func (cw *corsWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }
