package httpauthz

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/corsauthz/corsauthz/decision"
	"github.com/corsauthz/corsauthz/internal/limits"
	"github.com/corsauthz/corsauthz/internal/tracing"
	"github.com/corsauthz/corsauthz/policy"
)

// lingerTimeout bounds how long a connection whose request announced a
// body is kept after the answer, its writing side shut, reading what the
// client still sends so that closing it does not reset the answer away
// (net/http waits as long, rstAvoidanceDelay in net/http/server.go).
const lingerTimeout = 500 * time.Millisecond

// ServerOptions configure a Server. The zero value is usable.
type ServerOptions struct {
	// IdleTimeout closes keep-alive connections idle that long (0:
	// IdleTimeout).
	IdleTimeout time.Duration
	// Log receives the server's own messages, one line each: a failed
	// TLS handshake ("http: TLS handshake error from ADDR: REASON", as
	// net/http words it), an error accepting connections. nil: none.
	Log func(msg string)
}

// Server is the HTTP authorization listener: HTTP/1.1 served by
// github.com/valyala/fasthttp's server, which costs about half as much
// CPU per request as net/http's (docs/performance.md), with the same
// limits and behaviour as NewServer's net/http server gives the Handler
// (docs/nginx.md says which fasthttp setting gives each), and answers
// without Date, Server or Content-Type lines:
//
//   - request headers bounded by limits.HTTPHeaderBytes (431 past it),
//     read within ReadHeaderTimeout, else the connection is closed
//     without an answer;
//   - an answer written within ReadTimeout of the end of the handler (a
//     client that never reads is cut off); keep-alive connections closed
//     after IdleTimeout idle;
//   - a request body never read: a request that announces one is answered
//     with Connection: close, and the connection closed after the answer;
//   - malformed requests (a line that is not a header, a repeated Host or
//     Content-Length, an unknown Transfer-Encoding, both Content-Length
//     and Transfer-Encoding) answered 400 and the connection closed;
//   - over TLS (a listener wrapped by tls.NewListener), a failed handshake
//     logged with net/http's words, a plain HTTP request answered 400;
//   - Shutdown closes the listener and idle connections, and waits for
//     the requests in flight, whose answers say Connection: close.
//
// Its zero value is not usable: use Handler.Server.
type Server struct {
	h   *Handler
	fs  *fasthttp.Server
	log func(string)

	mu     sync.Mutex
	conns  map[*serverConn]struct{}
	closed bool
}

// Server returns the listener's server answering with h.
func (h *Handler) Server(o ServerOptions) *Server {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = IdleTimeout
	}
	s := &Server{h: h, log: o.Log, conns: map[*serverConn]struct{}{}}
	if s.log == nil {
		s.log = func(string) {}
	}
	s.fs = &fasthttp.Server{
		Handler:      s.serve,
		ErrorHandler: s.refuse,
		// A body is never read: see bodyless.
		HeaderReceived: bodyless,
		// The whole header block must fit in the read buffer: net/http
		// allows MaxHeaderBytes and 4096 bytes more (initialReadLimitSize).
		ReadBufferSize: limits.HTTPHeaderBytes + 4096,
		// Released between requests: an idle connection holds no buffer.
		ReduceMemoryUsage: true,
		// Applies from a connection's first byte, and from the first
		// byte of each later request, to the end of its header (the body
		// is never read).
		ReadTimeout: ReadHeaderTimeout,
		// Applies from the end of the handler to the end of the answer.
		WriteTimeout:    ReadTimeout,
		IdleTimeout:     o.IdleTimeout,
		CloseOnShutdown: true,
		// No time.Now a request for RequestCtx.Time, which is not read.
		LazyRequestTime:       true,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		NoDefaultContentType:  true,
		// Header names as the client sent them in RawHeaders; fasthttp's
		// own parsed copies are not read.
		DisableHeaderNamesNormalizing: false,
		DisablePreParseMultipartForm:  true,
		// Errors that quote no request bytes (badRequestReason).
		SecureErrorLogMessage: true,
		Logger:                serverLogger(s.log),
	}
	return s
}

// Serve accepts connections on l and serves them until Shutdown or
// Close, then returns http.ErrServerClosed.
func (s *Server) Serve(l net.Listener) error {
	err := s.fs.Serve(&serverListener{Listener: l, s: s})
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed || err == nil {
		return http.ErrServerClosed
	}
	return err
}

// Shutdown stops accepting connections, closes idle ones and waits for
// the requests in flight until ctx ends (then it returns ctx.Err(): call
// Close).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.fs.ShutdownWithContext(ctx)
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.fs.ShutdownWithContext(ctx) // closes the listeners
	for _, c := range conns {
		_ = c.Conn.Close()
	}
	return nil
}

// check is what serve needs for one request, pooled: nothing keeps it
// once serve returns (Decide is done with it, and what it kept of the
// request's values are strings of their own).
type check struct {
	r   wireRequest
	req policy.Request
	src wireSource
}

var checks = sync.Pool{New: func() any { return new(check) }}

// serve answers a check request: read, decide, answer, as
// Handler.ServeHTTP does.
func (s *Server) serve(ctx *fasthttp.RequestCtx) {
	h := s.h
	a := wireAnswer{ctx}
	ck := checks.Get().(*check)
	defer func() {
		*ck = check{}
		checks.Put(ck)
		// fasthttp recovers no panic: one would end the process. As
		// net/http does, log it and close the connection.
		if p := recover(); p != nil {
			s.log(fmt.Sprintf("http: panic serving %v: %v", ctx.RemoteAddr(), p))
			_ = ctx.Conn().Close()
		}
	}()
	r := &ck.r
	r.scan(ctx)
	c, _ := ctx.Conn().(*serverConn)
	if r.body {
		ctx.SetConnectionClose()
		if c != nil {
			c.linger.Store(true)
		}
	}
	if m := r.method(); (m == http.MethodGet || m == http.MethodHead) && isHealthProbe(m, r.path(), r) {
		h.health(a)
		return
	}
	req := &ck.req
	if err := readRequest(r, h.prefix, req); err != nil {
		h.core.Refused(context.Background(), decision.FrontEndHTTP, err.Message, slog.Int("status", err.Status))
		writeText(a, err.Status, err.Message)
		return
	}
	// Not ctx: it is done when the server shuts down, and the requests in
	// flight are to finish then; done instead when the gateway hangs up
	// (hangupContext).
	dctx := context.Background()
	if h.core.Tracing() {
		dctx = tracing.FromHeader(dctx, r.header()) // traceparent from the gateway
	}
	if c != nil {
		hc := newHangupContext(dctx, c.Conn)
		defer hc.end()
		dctx = hc
	}
	ck.src = wireSource{r: r, req: req, tls: c != nil && c.tls != nil}
	out := h.core.Decide(dctx, decision.FrontEndHTTP, req, &ck.src)
	writeOutcome(a, r, &out)
}

// bodyless makes fasthttp read no body: a request that announces one
// (Content-Length, chunked) is told to have none, and its Expect header
// is dropped so that no 100 Continue invites it; the handler sees the
// framing in the raw header, answers with Connection: close and the
// connection is closed after the answer, unread bytes and all.
func bodyless(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.ContentLength() != -2 && h.ContentLength() != 0 {
		h.SetContentLength(0)
	}
	if len(h.Peek(fasthttp.HeaderExpect)) > 0 {
		h.Del(fasthttp.HeaderExpect)
	}
	return fasthttp.RequestConfig{}
}

// refuse answers a request fasthttp could not read, as net/http answers
// one: 431 past the header limit, 400 for a malformed one (without
// quoting it), and nothing for a connection that timed out or failed
// (it is closed).
func (s *Server) refuse(ctx *fasthttp.RequestCtx, err error) {
	a := wireAnswer{ctx}
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		writeText(a, http.StatusRequestHeaderFieldsTooLarge, "431 Request Header Fields Too Large")
	case errors.As(err, &netErr), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		_ = ctx.Conn().Close() // no answer: nothing can be written, or the client is gone
	case errors.Is(err, fasthttp.ErrUnsupportedTransferEncoding):
		writeText(a, http.StatusNotImplemented, "501 Not Implemented: unsupported Transfer-Encoding")
	default:
		writeText(a, http.StatusBadRequest, "400 Bad Request: "+badRequestReason(err))
	}
}

// badRequestReason words fasthttp's error for a malformed request as
// net/http does, without quoting what the client sent (with
// SecureErrorLogMessage, fasthttp's errors quote it only in the parse
// error of a malformed line, which is not looked into).
func badRequestReason(err error) string {
	const prefix = "error when reading request headers: "
	msg := err.Error()
	switch {
	case errors.Is(err, fasthttp.ErrDuplicateContentLength):
		return "too many Content-Length headers"
	case errors.Is(err, fasthttp.ErrorInvalidURI):
		return "invalid request target"
	case strings.HasPrefix(msg, prefix+"missing required host header"):
		return "missing required Host header"
	case strings.HasPrefix(msg, prefix+"too many host headers"):
		return "too many Host headers"
	}
	return "malformed request"
}

// serverLogger passes fasthttp's own messages on, but for the per
// connection errors of clients (a malformed request, already answered
// 400; a reset): net/http does not log those either.
type serverLogger func(string)

func (l serverLogger) Printf(format string, args ...any) {
	if strings.HasPrefix(format, "error when serving connection") {
		return
	}
	l(fmt.Sprintf(format, args...))
}

// serverListener wraps each connection for the server (serverConn) and
// tracks them for Close.
type serverListener struct {
	net.Listener
	s *Server
}

func (l *serverListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &serverConn{Conn: c, s: l.s}
	sc.tls, _ = c.(*tls.Conn)
	l.s.mu.Lock()
	l.s.conns[sc] = struct{}{}
	l.s.mu.Unlock()
	return sc, nil
}

// serverConn is a connection of the server: it makes the TLS handshake
// (with a deadline, a failure logged) and lingers before closing when
// its request's body was not read.
type serverConn struct {
	net.Conn
	s   *Server
	tls *tls.Conn // nil for plain HTTP
	// Read only from the serving goroutine:
	handshook bool
	failed    bool
	ahead     *[readAhead]byte // read ahead from the socket, pending
	pending   []byte
	linger    atomic.Bool
	closeOnce sync.Once
}

// readAhead is how much a small read of a serverConn asks the socket
// for: a gateway's check request fits.
const readAhead = 4096

var readAheadPool = sync.Pool{New: func() any { return new([readAhead]byte) }}

// Read reads from the connection. With ReduceMemoryUsage, fasthttp holds
// no buffer while a connection is idle: it reads the first byte of the
// next request alone, then the rest into a pooled buffer, two reads from
// the socket for one request. Read answers a read smaller than readAhead
// from a pooled buffer filled by one read from the socket, keeping the
// rest for the next reads: the request is read from the socket once, and
// an idle connection still holds no buffer.
func (c *serverConn) Read(p []byte) (int, error) {
	if c.tls != nil && !c.handshook {
		c.handshook = true
		c.failed = !c.handshake()
	}
	if c.failed {
		return 0, io.EOF
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			readAheadPool.Put(c.ahead)
			c.ahead, c.pending = nil, nil
		}
		return n, nil
	}
	if len(p) >= readAhead {
		return c.Conn.Read(p)
	}
	buf := readAheadPool.Get().(*[readAhead]byte)
	var n int
	var err error
	// A read of nothing and no error is retried, as bufio does: fasthttp
	// takes it for a bug and panics.
	for range 100 {
		if n, err = c.Conn.Read(buf[:]); n > 0 || err != nil {
			break
		}
	}
	if n == 0 && err == nil {
		err = io.ErrNoProgress
	}
	m := copy(p, buf[:n])
	if m == n {
		readAheadPool.Put(buf)
		return m, err
	}
	c.ahead, c.pending = buf, buf[m:n]
	return m, nil // err, if any, comes again on the next read from the socket
}

// handshake makes the TLS handshake within ReadHeaderTimeout, as
// net/http does, answering a plain HTTP request with its 400 and logging
// a failure with its words (server.go, conn.serve).
func (c *serverConn) handshake() bool {
	d := time.Now().Add(ReadHeaderTimeout)
	_ = c.tls.SetDeadline(d)
	err := c.tls.Handshake()
	_ = c.tls.SetWriteDeadline(time.Time{})
	if err == nil {
		return true
	}
	reason := err.Error()
	var re tls.RecordHeaderError
	if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		reason = "client sent an HTTP request to an HTTPS server"
	}
	c.s.log(fmt.Sprintf("http: TLS handshake error from %s: %s", c.RemoteAddr(), reason))
	return false
}

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP request (net/http's tlsRecordHeaderLooksLikeHTTP).
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

func (c *serverConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.linger.Load() {
			if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.Copy(io.Discard, io.LimitReader(c.Conn, refuseReadLimit))
		}
		err = c.Conn.Close()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	})
	return err
}
