package httpauthz

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// hangupPoll is how often a check that waits (on an authorizer) looks
// whether its gateway hung up.
const hangupPoll = 100 * time.Millisecond

// hangupContext is the context of a check while it is decided on the
// fasthttp server: done when the gateway closes the connection, as a
// net/http request's context is. fasthttp does not read a connection
// while its handler runs, so nothing would tell an authorizer call that
// its answer has nowhere to go: it would hold its place in the
// authorizer pool until its timeout. The connection is looked at only
// once something waits on the context (Done: an authorizer call), every
// hangupPoll, without reading from it (a request the gateway sent after
// this one stays unread); a check that asks no authorizer costs no
// goroutine and no system call. As with net/http, a gateway that shuts
// only its writing side counts as gone.
//
// On Linux the look is poll's POLLRDHUP, which sees the gateway's FIN
// behind unread bytes (a TLS close_notify record, a next request). On
// other systems it is a peek, which sees the FIN only when nothing is
// unread: there a TLS gateway's clean close is not seen, and the call
// ends at the authorizer's timeout.
type hangupContext struct {
	context.Context
	conn     net.Conn
	start    sync.Once
	done     chan struct{}
	gone     atomic.Bool
	answered atomic.Bool
}

// newHangupContext returns the context of a check on c, a child of
// parent.
func newHangupContext(parent context.Context, c net.Conn) *hangupContext {
	return &hangupContext{Context: parent, conn: c}
}

func (c *hangupContext) Done() <-chan struct{} {
	c.start.Do(func() {
		c.done = make(chan struct{})
		go c.watch()
	})
	return c.done
}

func (c *hangupContext) Err() error {
	if c.gone.Load() {
		return context.Canceled
	}
	return c.Context.Err()
}

// end is called once the check is answered: the watch stops.
func (c *hangupContext) end() { c.answered.Store(true) }

// watch looks at the socket every hangupPoll until the check is answered,
// the gateway hangs up or the parent is done. A connection whose socket
// cannot be reached is not looked at.
func (c *hangupContext) watch() {
	socket := rawSocket(c.conn)
	t := time.NewTicker(hangupPoll)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.Context.Done():
			close(c.done)
			return
		}
		if c.answered.Load() {
			return
		}
		if socket != nil && peerClosed(socket) {
			c.gone.Store(true)
			close(c.done)
			return
		}
	}
}

// rawSocket is the socket under c (through TLS and listener wrappers),
// or nil.
func rawSocket(c net.Conn) syscall.RawConn {
	for range 8 {
		if sc, ok := c.(syscall.Conn); ok {
			raw, err := sc.SyscallConn()
			if err != nil {
				return nil
			}
			return raw
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = w.NetConn()
	}
	return nil
}
