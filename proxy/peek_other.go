//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

import "net"

// peerClosed cannot peek without blocking on this platform; a broker's close
// is then noticed by the next read, when a response is owed.
func peerClosed(net.Conn) (bool, error) { return false, nil }
