//go:build !unix

package e2e

import (
	"os"
	"syscall"
)

// signalPid sends sig to the process pid. Off Unix only SIGKILL can be sent (os.Process.Signal
// refuses the others); the suite's broker scripts are bash and run on Linux, so this exists for the
// package to vet and build on every GOOS.
func signalPid(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Signal(sig)
}

// pidAlive reports whether a process pid still exists, as far as os.FindProcess can tell.
func pidAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	p.Release()
	return true
}
