package connlimit_test

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corsauthz/corsauthz/internal/connlimit"
)

// served accepts on l until it fails, holding every connection open and
// sending each one byte, so that a client can tell a served connection
// (it reads the byte) from a refused one (EOF).
func served(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte{1})
		go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
	}
}

// dial connects to addr and returns the connection and the first byte
// it reads: 1 from the server, 2 from a Refuse function, 0 when the
// connection was closed without a byte.
func dial(t *testing.T, addr string) (net.Conn, byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("nothing read from a connection in 5 s")
		}
		return c, 0
	}
	return c, b[0]
}

func TestListen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		desc   string
		refuse bool // with a Refuse function (it writes 2 and closes)
	}{
		{desc: "past the cap: closed at once"},
		{desc: "past the cap: refused by Refuse", refuse: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var opened, closed, refused atomic.Int64
			lim := connlimit.Limits{
				Max:     2,
				Opened:  func() { opened.Add(1) },
				Closed:  func() { closed.Add(1) },
				Refused: func() { refused.Add(1) },
			}
			if tc.refuse {
				lim.MaxRefusing = 1
				lim.Refuse = func(c net.Conn) { _, _ = c.Write([]byte{2}); c.Close() }
			}
			l := connlimit.Listen(raw, lim)
			defer l.Close()
			go served(l)
			addr := raw.Addr().String()

			first, b1 := dial(t, addr)
			_, b2 := dial(t, addr)
			if b1 != 1 || b2 != 1 {
				t.Fatalf("connections within the cap read %d and %d, want 1 from the server", b1, b2)
			}
			want := byte(0) // closed at once
			if tc.refuse {
				want = 2
			}
			if c, b := dial(t, addr); b != want {
				t.Errorf("past the cap: read %d, want %d", b, want)
			} else if b == 2 {
				if n, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Errorf("after Refuse's byte: read %d %v, want EOF", n, err)
				}
			}
			first.Close()
			waitFor(t, func() bool { return closed.Load() == 1 })
			if _, b := dial(t, addr); b != 1 {
				t.Errorf("a connection after one closed read %d, want 1 from the server", b)
			}
			if opened.Load() != 3 || refused.Load() != 1 {
				t.Errorf("opened %d, refused %d; want 3 and 1", opened.Load(), refused.Load())
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}
