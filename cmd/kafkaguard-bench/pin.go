package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
)

// With --pin the proxy under test (kafkaguard, the relay, a peer) runs on
// cores of its own and the bench's clients and in-process kfake on the
// others, so a proxy's throughput and CPU per byte are its own and not
// what is left over from the clients: on 2 cores, one each (issue 14).

// coreSplit returns the CPU lists (taskset -c syntax) for the clients and
// the proxy: the proxy gets the upper half of n CPUs, at least one.
func coreSplit(n int) (clients, proxy string) {
	if n < 2 {
		return "", ""
	}
	half := n / 2
	return cpuRange(0, half-1), cpuRange(half, n-1)
}

func cpuRange(lo, hi int) string {
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// pinning is the chosen split; zero when --pin is off.
type pinning struct {
	clients, proxy string
}

// setupPinning pins every thread of the bench process to the clients'
// CPUs (threads the runtime starts later inherit it) and returns the split.
func setupPinning(on bool) (pinning, error) {
	if !on {
		return pinning{}, nil
	}
	clients, proxy := coreSplit(runtime.NumCPU())
	if proxy == "" {
		return pinning{}, fmt.Errorf("--pin needs at least 2 CPUs, have %d", runtime.NumCPU())
	}
	out, err := exec.Command("taskset", "-a", "-p", "-c", clients, strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		return pinning{}, fmt.Errorf("taskset the bench to CPUs %s: %w: %s", clients, err, out)
	}
	return pinning{clients: clients, proxy: proxy}, nil
}

// release gives the bench's threads every CPU back (a test process goes on
// to other tests).
func (p pinning) release() {
	if p.proxy == "" {
		return
	}
	exec.Command("taskset", "-a", "-p", "-c", cpuRange(0, runtime.NumCPU()-1), strconv.Itoa(os.Getpid())).Run()
}

// command returns an exec.Cmd for name args, run on the proxy's CPUs when
// pinning is on.
func (p pinning) command(name string, args ...string) *exec.Cmd {
	if p.proxy == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("taskset", append([]string{"-c", p.proxy, name}, args...)...)
}

func (b *bench) pinDesc() string {
	if b.pin.proxy == "" {
		return "not pinned"
	}
	return fmt.Sprintf("pinned: proxies on CPU %s, clients and kfake on CPU %s", b.pin.proxy, b.pin.clients)
}
