//go:build unix && !linux

package httpauthz

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the peer of socket closed it (or reset it),
// by peeking: nothing is read.
func peerClosed(socket syscall.RawConn) bool {
	closed := false
	_ = socket.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || (err != nil && err != unix.EAGAIN && err != unix.EINTR)
		return true
	})
	return closed
}
