package httpauthz

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
)

// DefaultMaxConnections is the default of ConnLimits.Max (and of
// corsauthz serve --http-max-connections): an idle keep-alive connection
// costs about 18 KiB of the listener (docs/limits.md), so that many stay
// within the shipped 128 MiB with the rest of the process.
const DefaultMaxConnections = 2048

// maxRefusing bounds the connections past the cap being answered at
// once; past it a connection is closed at once.
const maxRefusing = 128

// ConnLimits bound the connections of a listener.
type ConnLimits struct {
	// Max is how many connections may be open at once (0:
	// DefaultMaxConnections), idle keep-alive ones included.
	Max int
	// Refused, when set, is called for each connection refused.
	Refused func()
	// Opened and Closed, when set, are called as connections within the
	// cap open and close (for a gauge).
	Opened, Closed func()
}

// LimitConnections bounds srv's connections on l (a TCP listener: wrap
// the listener it returns with tls.NewListener for TLS) to lim.Max open
// at once, and returns the listener srv must serve.
//
// A connection past the cap is served one request, answered 503 with
// Connection: close and a line naming the flag, then closed. The gateway
// gets an answer it can log, count and retry elsewhere, where closing the
// connection at once or leaving it in the kernel's backlog would give it
// an EOF, a reset or a timeout, which NGINX reports as a 502 and Envoy as
// an upstream failure without saying why. The answer is written after the
// request has been read: an HTTP client that sees an answer before it has
// sent its request drops the connection (Go's does). It carries no CORS
// headers (nothing is decided); a gateway answers the browser with its own
// error, as for any failure of corsauthz. At most maxRefusing connections
// are refused this way at once, each within srv's timeouts; past that, a
// connection is closed as soon as it is accepted, so that a flood of
// connections costs a bounded number of goroutines and buffers.
func LimitConnections(srv *http.Server, l net.Listener, lim ConnLimits) net.Listener {
	if lim.Max <= 0 {
		lim.Max = DefaultMaxConnections
	}
	nop := func() {}
	for _, f := range []*func(){&lim.Refused, &lim.Opened, &lim.Closed} {
		if *f == nil {
			*f = nop
		}
	}
	ll := &limitListener{Listener: l, lim: lim}
	next := srv.Handler
	answer := tooManyConnections(lim.Max)
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(refusedKey{}) == nil {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Retry-After", "1")
		h.Set("Connection", "close")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, answer)
	})
	connContext := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if connContext != nil {
			ctx = connContext(ctx, c)
		}
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		if _, ok := c.(*refusedConn); ok {
			ctx = context.WithValue(ctx, refusedKey{}, true)
		}
		return ctx
	}
	return ll
}

// refusedKey marks the context of a connection past the cap.
type refusedKey struct{}

type limitListener struct {
	net.Listener
	lim      ConnLimits
	open     atomic.Int64
	refusing atomic.Int64
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= int64(l.lim.Max) {
			l.lim.Opened()
			return &limitedConn{Conn: c, release: func() {
				l.open.Add(-1)
				l.lim.Closed()
			}}, nil
		}
		l.open.Add(-1)
		l.lim.Refused()
		if l.refusing.Add(1) > maxRefusing {
			l.refusing.Add(-1)
			c.Close()
			continue
		}
		return &refusedConn{limitedConn{Conn: c, release: func() { l.refusing.Add(-1) }}}, nil
	}
}

// limitedConn gives its place back when closed (once, however often
// net/http closes it).
type limitedConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// refusedConn is a connection past the cap: its request is answered 503.
type refusedConn struct{ limitedConn }

// tooManyConnections is the body of the answer past the cap.
func tooManyConnections(limit int) string {
	return "corsauthz: too many connections open (" + strconv.Itoa(limit) + ", --http-max-connections); retry later\n"
}
