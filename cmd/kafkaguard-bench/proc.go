package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is one reading of a process's memory and CPU.
type procStat struct {
	rssKiB, hwmKiB int64
	cpu            float64 // user + system seconds since start
}

func readProc(pid int) (procStat, error) {
	var ps procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS":
			ps.rssKiB = kib(v)
		case "VmHWM":
			ps.hwmKiB = kib(v)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return ps, fmt.Errorf("read /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 { // utime and stime are fields 14 and 15, here 11 and 12 (0-based)
		return ps, fmt.Errorf("read /proc/%d/stat: %d fields", pid, len(f))
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	ps.cpu = float64(ut+st) / clockTicks
	return ps, nil
}

func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n
}

// resetPeak resets the process's VmHWM to its current RSS ("5" to
// clear_refs), so the peak of one workload is its own.
func resetPeak(pid int) {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// sample is one point of a memory series.
type sample struct {
	t      time.Duration
	rssMiB float64
}

// sampler reads a process's RSS every interval until stopped, bounded in
// count.
type sampler struct {
	mu   sync.Mutex
	pts  []sample
	stop chan struct{}
	done chan struct{}
}

func startSampler(pid int, every time.Duration, maxPoints int) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for range maxPoints {
			if ps, err := readProc(pid); err == nil {
				s.mu.Lock()
				s.pts = append(s.pts, sample{time.Since(start), float64(ps.rssKiB) / 1024})
				s.mu.Unlock()
			}
			select {
			case <-t.C:
			case <-s.stop:
				return
			}
		}
	}()
	return s
}

func (s *sampler) finish() []sample {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pts
}
