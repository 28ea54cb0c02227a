package httpauthz

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConnections is the default of ConnLimits.Max (and of
// corsauthz serve --http-max-connections): an idle keep-alive connection
// costs about 18 KiB of the listener (docs/limits.md), so that many stay
// within the shipped 128 MiB with the rest of the process.
const DefaultMaxConnections = 2048

// Refusal bounds: connections past the cap are answered by at most
// maxRefusing goroutines at once, each spending at most refuseTimeout on
// its connection (the TLS handshake, the answer, and reading what the
// client sent so that closing does not reset the answer away); past
// maxRefusing a connection is closed at once.
const (
	maxRefusing   = 128
	refuseTimeout = time.Second
	refuseDrain   = 64 << 10
)

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

// LimitListener returns l with at most lim.Max connections open at once.
//
// A connection past the cap is accepted and answered at once with
// tooManyConnections (a 503 that closes the connection), written before
// its request is read: the gateway gets an answer it can log, count and
// retry elsewhere, where closing the connection or leaving it in the
// kernel's backlog would give it an EOF, a reset or a timeout, which NGINX
// reports as a 502 and Envoy as an upstream failure without saying why.
// The answer cannot carry CORS headers (the request is not read); a
// gateway answers the browser with its own error for it, as for any
// failure of corsauthz. When more than maxRefusing connections are being
// refused at once, the next ones are closed without an answer: a flood of
// connections costs a bounded number of goroutines.
//
// With TLS, l is the TLS listener: the answer goes through the handshake.
func LimitListener(l net.Listener, lim ConnLimits) net.Listener {
	if lim.Max <= 0 {
		lim.Max = DefaultMaxConnections
	}
	nop := func() {}
	for _, f := range []*func(){&lim.Refused, &lim.Opened, &lim.Closed} {
		if *f == nil {
			*f = nop
		}
	}
	return &limitListener{Listener: l, lim: lim}
}

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
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.lim.Refused()
		if l.refusing.Add(1) > maxRefusing {
			l.refusing.Add(-1)
			c.Close()
			continue
		}
		go func() {
			defer l.refusing.Add(-1)
			refuse(c, l.lim.Max)
		}()
	}
}

// Open is how many connections are open within the cap.
func (l *limitListener) Open() int { return int(l.open.Load()) }

// limitedConn gives its place back when closed (once, however often net/http
// closes it).
type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		c.l.lim.Closed()
	})
	return err
}

// tooManyConnections is the answer to a connection past the cap.
func tooManyConnections(limit int) []byte {
	body := "corsauthz: too many connections open (" + strconv.Itoa(limit) + ", --http-max-connections); retry later\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"Retry-After: 1\r\n" +
		"Connection: close\r\n\r\n" + body)
}

// refuse answers c with tooManyConnections, then closes it. Closing a
// socket with unread data makes the kernel send a reset, which can
// overtake the answer: so the writing side is shut first, and what the
// client sent is read (up to refuseDrain) until it closes or
// refuseTimeout passes.
func refuse(c net.Conn, limit int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	if _, err := c.Write(tooManyConnections(limit)); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, refuseDrain))
}
