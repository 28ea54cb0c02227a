package httpauthz

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/corsauthz/corsauthz/internal/connlimit"
)

// DefaultMaxConnections is the default of ConnLimits.Max (and of
// corsauthz serve --http-max-connections): an idle keep-alive connection
// costs about 18 KiB of the listener (docs/limits.md), so that many stay
// within the shipped 128 MiB with the rest of the process.
const DefaultMaxConnections = 2048

// Refusals: at most maxRefusing connections past the cap are being
// answered at once, each within refuseTimeout (reading the request's
// header, at most refuseReadLimit bytes of it, writing the answer, and
// reading what else the client sent so that closing does not reset the
// answer away). Past maxRefusing the listener accepts nothing until one
// of them, or any connection, closes.
const (
	maxRefusing     = 1024
	refuseTimeout   = ReadHeaderTimeout
	refuseReadLimit = 64 << 10
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

// LimitConnections bounds the connections accepted on l (a TCP listener;
// tlsConfig, when not nil, is the TLS the server speaks above it: wrap the
// listener returned with tls.NewListener) to lim.Max open at once.
//
// A connection past the cap is not handed to the server: the listener
// reads its request's header, answers 503 with Connection: close and a
// line naming the flag, and closes it, with a goroutine and a 1 KiB buffer
// (net/http would spend about 20 KiB). The gateway gets an answer it can
// log, count and retry elsewhere, where closing the connection at once or
// leaving it in the kernel's backlog would give it an EOF, a reset or a
// timeout, which NGINX reports as a 502 and Envoy as an upstream failure
// without saying why. The answer comes after the request's header: an
// HTTP client that sees an answer before it has sent its request drops the
// connection (Go's does). It carries no CORS headers (nothing is decided);
// a gateway answers the browser with its own error, as for any failure of
// corsauthz. At most maxRefusing connections are being refused at once,
// each for at most refuseTimeout; past that, the listener accepts nothing
// until a connection closes, and new ones wait in the kernel's backlog: a
// flood of connections costs a bounded number of goroutines and buffers.
func LimitConnections(l net.Listener, tlsConfig *tls.Config, lim ConnLimits) net.Listener {
	if lim.Max <= 0 {
		lim.Max = DefaultMaxConnections
	}
	answer := tooManyConnections(lim.Max)
	return connlimit.Listen(l, connlimit.Limits{
		Max:         lim.Max,
		Refuse:      func(c net.Conn) { refuse(c, tlsConfig, answer) },
		MaxRefusing: maxRefusing,
		Refused:     lim.Refused,
		Opened:      lim.Opened,
		Closed:      lim.Closed,
	})
}

// refuse reads the header of c's request, answers it with answer and
// closes c, all within refuseTimeout. Closing a socket with unread data
// makes the kernel send a reset, which can overtake the answer: so the
// writing side is shut first, and what else the client sent is read until
// it closes or the time is up.
func refuse(c net.Conn, tlsConfig *tls.Config, answer []byte) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseTimeout))
	if tlsConfig != nil {
		tc := tls.Server(c, tlsConfig)
		defer tc.Close()
		c = tc
	}
	if !readHeader(c) {
		return
	}
	if _, err := c.Write(answer); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, refuseReadLimit))
}

// readHeader reads from r up to the blank line that ends a request's
// header; false when r ends or fails first, or sends more than
// refuseReadLimit bytes without one.
func readHeader(r io.Reader) bool {
	var buf [1024]byte
	var tail [3]byte // the last bytes of the read before
	read := 0
	for read < refuseReadLimit {
		n, err := r.Read(buf[:])
		if n > 0 {
			chunk := append(tail[:], buf[:n]...)
			if bytes.Contains(chunk, []byte("\r\n\r\n")) {
				return true
			}
			copy(tail[:], chunk[len(chunk)-3:])
			read += n
		}
		if err != nil {
			return false
		}
	}
	return false
}

// tooManyConnections is the answer past the cap.
func tooManyConnections(limit int) []byte {
	body := "corsauthz: too many connections open (" + strconv.Itoa(limit) + ", --http-max-connections); retry later\n"
	return []byte("HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"Retry-After: 1\r\n" +
		"Connection: close\r\n\r\n" + body)
}
