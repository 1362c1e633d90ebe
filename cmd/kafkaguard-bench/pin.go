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

// pinning is the chosen split (zero when --pin is off) and the proxies'
// CPU cgroups (nil without --cpu-quota).
type pinning struct {
	clients, proxy string
	quota          *cpuCgroups
}

// setupPinning pins every thread of the bench process to the clients'
// CPUs (threads the runtime starts later inherit it) and returns the split.
func setupPinning(on bool, quota float64) (pinning, error) {
	g, err := newCPUCgroups(quota)
	if err != nil || !on {
		return pinning{quota: g}, err
	}
	clients, proxy := coreSplit(runtime.NumCPU())
	if proxy == "" {
		g.remove()
		return pinning{}, fmt.Errorf("--pin needs at least 2 CPUs, have %d", runtime.NumCPU())
	}
	out, err := exec.Command("taskset", "-a", "-p", "-c", clients, strconv.Itoa(os.Getpid())).CombinedOutput()
	if err != nil {
		g.remove()
		return pinning{}, fmt.Errorf("taskset the bench to CPUs %s: %w: %s", clients, err, out)
	}
	return pinning{clients: clients, proxy: proxy, quota: g}, nil
}

// release gives the bench's threads every CPU back (a test process goes on
// to other tests) and removes the proxies' cgroups.
func (p pinning) release() {
	p.quota.remove()
	if p.proxy == "" {
		return
	}
	exec.Command("taskset", "-a", "-p", "-c", cpuRange(0, runtime.NumCPU()-1), strconv.Itoa(os.Getpid())).Run()
}

// command returns an exec.Cmd for name args, run on the proxy's CPUs when
// pinning is on, in a CPU cgroup of its own with --cpu-quota. Every wrapper
// execs, so the command's pid is the proxy's.
func (p pinning) command(name string, args ...string) (*exec.Cmd, error) {
	argv := append([]string{name}, args...)
	if p.proxy != "" {
		argv = append([]string{"taskset", "-c", p.proxy}, argv...)
	}
	argv, err := p.quota.wrap(argv)
	if err != nil {
		return nil, err
	}
	return exec.Command(argv[0], argv[1:]...), nil
}

func (b *bench) pinDesc() string {
	d := "not pinned"
	if b.pin.proxy != "" {
		d = fmt.Sprintf("pinned: proxies on CPU %s, clients and kfake on CPU %s", b.pin.proxy, b.pin.clients)
	}
	if q := b.pin.quota; q != nil {
		d += fmt.Sprintf("; each proxy capped at %.2f of a CPU (CPU cgroup, %d µs period)", q.fraction, q.period)
	}
	return d
}
