//go:build unix

package main

import "syscall"

// raiseFileLimit lifts this process's open-file limit (and so its
// children's, kafkaguard and the relay: a limit the program set is the one
// they inherit) to at least n when it can: 10 000 idle connections through
// a proxy are 20 000 sockets in the proxy and as many in the bench. It
// returns the soft limit in force.
func raiseFileLimit(n uint64) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	if lim.Cur >= n {
		return lim.Cur
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		// Not allowed past the hard limit: go as far as it.
		want = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
			return lim.Cur
		}
	}
	return want.Cur
}
