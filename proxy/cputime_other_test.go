//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package proxy

import "time"

// cpuTime is 0 where syscall has no getrusage (Windows, Plan 9, ...): the
// benchmarks' CPU figures read 0 there, and only their wall-clock figures
// mean anything. It exists so the package vets and builds on every GOOS.
func cpuTime() time.Duration { return 0 }
