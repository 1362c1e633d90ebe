//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// peerClosed reports whether the peer of c has closed or reset it, without
// consuming a byte or blocking: a MSG_PEEK|MSG_DONTWAIT recv of one byte on
// the socket. It runs through RawConn.Control, which does not take the
// socket's read lock, so it never waits behind a pump blocked in a read.
// For anything but a socket it reports false.
func peerClosed(c net.Conn) (bool, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, nil
	}
	var n int
	var rerr error
	var b [1]byte
	if err := rc.Control(func(fd uintptr) {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}); err != nil {
		return false, nil // closed on our side already: whoever closed it handles it
	}
	switch {
	case rerr == nil && n == 0:
		return true, io.EOF
	case rerr == nil,
		errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EWOULDBLOCK), errors.Is(rerr, syscall.EINTR):
		return false, nil
	default:
		return true, rerr // ECONNRESET and the like
	}
}
