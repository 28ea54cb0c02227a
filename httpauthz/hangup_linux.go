package httpauthz

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the peer of socket closed it (or its
// writing side), or reset it: poll's POLLRDHUP sees the peer's FIN even
// behind unread data, such as a TLS close_notify record or a request the
// gateway sent after this one, and reads nothing.
func peerClosed(socket syscall.RawConn) bool {
	closed := false
	_ = socket.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		closed = err == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
	})
	return closed
}
