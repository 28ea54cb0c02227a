// Package connlimit bounds the connections a listener hands to its
// server: every listener of corsauthz serve is bounded (the HTTP
// authorization listener, which answers a refused connection with a 503,
// and the gRPC one, which closes it), so that no number of connections,
// idle ones included, buys unbounded memory.
package connlimit

import (
	"net"
	"sync"
	"sync/atomic"
)

// Limits bound the connections of a listener.
type Limits struct {
	// Max is how many connections may be open at once, idle ones
	// included; it must be positive.
	Max int
	// Refuse, when set, answers a connection past Max and closes it, on a
	// goroutine of its own, taking at most a bounded time; at most
	// MaxRefusing run at once. Nil: the connection is closed at once.
	Refuse      func(net.Conn)
	MaxRefusing int
	// Refused, when set, is called for each connection refused; Opened
	// and Closed as connections within the cap open and close (for a
	// gauge).
	Refused, Opened, Closed func()
}

// Listen bounds the connections accepted on l to lim.Max open at once. A
// connection past the cap is refused (lim.Refuse) and never reaches the
// server. Past lim.Max open and lim.MaxRefusing being refused, Accept
// takes nothing more until a connection closes: new ones wait in the
// kernel's backlog, so a flood of connections costs a bounded number of
// goroutines.
func Listen(l net.Listener, lim Limits) net.Listener {
	nop := func() {}
	for _, f := range []*func(){&lim.Refused, &lim.Opened, &lim.Closed} {
		if *f == nil {
			*f = nop
		}
	}
	return &listener{Listener: l, lim: lim, freed: make(chan struct{}, 1), closed: make(chan struct{})}
}

type listener struct {
	net.Listener
	lim       Limits
	open      atomic.Int64
	refusing  atomic.Int64
	freed     chan struct{} // a token when a connection closed
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		// Past both bounds, wait for a connection to close first.
		for l.open.Load() >= int64(l.lim.Max) && l.refusing.Load() >= int64(l.lim.MaxRefusing) && l.lim.Refuse != nil {
			select {
			case <-l.freed:
			case <-l.closed:
				return nil, net.ErrClosed
			}
		}
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= int64(l.lim.Max) {
			l.lim.Opened()
			return &conn{Conn: c, release: func() {
				l.open.Add(-1)
				l.lim.Closed()
				l.signal()
			}}, nil
		}
		l.open.Add(-1)
		l.lim.Refused()
		if l.lim.Refuse == nil {
			c.Close()
			continue
		}
		// Only Accept adds to refusing, and it waited for room above.
		l.refusing.Add(1)
		go func() {
			defer func() {
				l.refusing.Add(-1)
				l.signal()
			}()
			l.lim.Refuse(c)
		}()
	}
}

func (l *listener) signal() {
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// conn gives its place back when closed (once, however often its server
// closes it).
type conn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// NetConn is the connection accepted, as tls.Conn.NetConn is (a server
// that looks at the socket itself unwraps it).
func (c *conn) NetConn() net.Conn { return c.Conn }
