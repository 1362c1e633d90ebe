package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// With --cpu-quota F each proxy under test (kafkaguard, the relay, the
// prototype, a peer) runs in a CPU cgroup of its own that lets it use F of
// one CPU: the proxy, not the clients, is then the bottleneck, however few
// cores the machine has (issue 14: on 2 cores, pinning alone leaves
// kafkaguard at a third of its core while the clients and kfake fill the
// other). Throughput through a capped proxy is its CPU efficiency, measured
// side by side with the relay's under the same cap.

// quotaPeriodUS is the CFS period: short, so a capped proxy is throttled in
// small slices rather than stopped for tens of milliseconds at a time;
// longer only where the quota would fall under the kernel's least, 1 ms.
const quotaPeriodUS, minQuotaUS = 10000, 1000

// cpuCgroups makes one cgroup per proxy under a parent of the bench's own,
// with cgroup v1's cpu controller (/sys/fs/cgroup/cpu) or cgroup v2's
// cpu.max (/sys/fs/cgroup), and removes them all at the end.
type cpuCgroups struct {
	fraction float64
	period   int    // µs
	parent   string // the bench's directory of cgroups
	v2       bool
	n        int
}

// errNoCgroup says why --cpu-quota cannot be had here.
var errNoCgroup = errors.New("--cpu-quota needs a writable CPU cgroup: cgroup v1's /sys/fs/cgroup/cpu or cgroup v2's /sys/fs/cgroup with the cpu controller (run as root)")

// newCPUCgroups prepares the bench's cgroup directory; a zero fraction
// means no quota.
func newCPUCgroups(fraction float64) (*cpuCgroups, error) {
	if fraction == 0 {
		return nil, nil
	}
	if fraction < 0.01 || fraction > 64 {
		return nil, fmt.Errorf("--cpu-quota %v: want a fraction of one CPU between 0.01 and 64", fraction)
	}
	name := fmt.Sprintf("kafkaguard-bench-%d", os.Getpid())
	for _, root := range []struct {
		dir string
		v2  bool
	}{{"/sys/fs/cgroup/cpu", false}, {"/sys/fs/cgroup", true}} {
		probe := "cpu.cfs_quota_us"
		if root.v2 {
			probe = "cpu.max"
			if ctl, err := os.ReadFile(filepath.Join(root.dir, "cgroup.subtree_control")); err != nil || !strings.Contains(string(ctl), "cpu") {
				continue
			}
		}
		dir := filepath.Join(root.dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, probe)); err != nil {
			os.Remove(dir)
			continue
		}
		period := max(quotaPeriodUS, int(minQuotaUS/fraction+0.5))
		return &cpuCgroups{fraction: fraction, period: period, parent: dir, v2: root.v2}, nil
	}
	return nil, errNoCgroup
}

// next makes the cgroup of one more proxy and returns its cgroup.procs
// file, which the proxy's wrapper joins before it execs the proxy.
func (g *cpuCgroups) next() (string, error) {
	g.n++
	dir := filepath.Join(g.parent, "p"+strconv.Itoa(g.n))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("cgroup for a proxy: %w", err)
	}
	quota := int(g.fraction*float64(g.period) + 0.5)
	var err error
	if g.v2 {
		err = os.WriteFile(filepath.Join(dir, "cpu.max"), fmt.Appendf(nil, "%d %d", quota, g.period), 0o644)
	} else {
		err = errors.Join(
			os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(g.period)), 0o644),
			os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.Itoa(quota)), 0o644))
	}
	if err != nil {
		return "", fmt.Errorf("set the CPU quota of %s: %w", dir, err)
	}
	return filepath.Join(dir, "cgroup.procs"), nil
}

// remove deletes the cgroups; the proxies in them have exited by then (a
// cgroup with a process in it cannot be removed, and is left behind).
func (g *cpuCgroups) remove() {
	if g == nil {
		return
	}
	for i := g.n; i >= 1; i-- {
		os.Remove(filepath.Join(g.parent, "p"+strconv.Itoa(i)))
	}
	os.Remove(g.parent)
}

// wrap returns argv run in a cgroup of its own: a shell joins it, then
// execs argv, so the proxy and every thread it starts are capped.
func (g *cpuCgroups) wrap(argv []string) ([]string, error) {
	if g == nil {
		return argv, nil
	}
	procs, err := g.next()
	if err != nil {
		return nil, err
	}
	return append([]string{"sh", "-c", `echo $$ > "$0" && exec "$@"`, procs}, argv...), nil
}
