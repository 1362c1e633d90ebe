//go:build unix

package e2e

import "syscall"

// signalPid sends sig to the process pid (a broker the scripts started, by its pid file).
func signalPid(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }

// pidAlive reports whether a process pid still exists (signal 0 checks without sending).
func pidAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }
