//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package proxy

import (
	"errors"
	"syscall"
)

// shrinkSocket gives a client socket, before it connects, a receive buffer of rcvbuf bytes and a
// segment size of mss, so a test's slow reader fills its window after a few segments.
func shrinkSocket(fd uintptr, rcvbuf, mss int) error {
	return errors.Join(
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf),
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, mss))
}
