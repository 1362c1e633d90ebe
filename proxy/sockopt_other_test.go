//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

import "errors"

// shrinkSocket is unsupported here (no TCP_MAXSEG in syscall); the tests that need it skip. It
// exists so the package vets and builds on every GOOS.
func shrinkSocket(fd uintptr, rcvbuf, mss int) error { return errors.ErrUnsupported }
