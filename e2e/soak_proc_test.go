package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// soakBuild builds kafkaguard without -race into dir. The soak measures the
// process's resident memory, and the race detector's shadow memory (5-10x)
// would make that figure meaningless; the other e2e tests hunt races.
func soakBuild(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "kafkaguard")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kafkaguard")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kafkaguard: %v\n%s", err, out)
	}
	return bin
}

// soakStartGuard runs bin with the YAML cfg (whose {{LISTEN}} and {{ADMIN}}
// it fills in with free loopback ports) in front of upstream, and waits for
// /healthz. Unlike startGuard, stopping it is the caller's business (the
// soak times its SIGTERM); the cleanup only kills a process still running.
func soakStartGuard(t *testing.T, bin, cfg, upstream string) *guard {
	t.Helper()
	g := &guard{upstreams: []string{upstream}, done: make(chan struct{})}
	g.addrs = []string{fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	g.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg = strings.NewReplacer("{{LISTEN}}", g.addrs[0], "{{UPSTREAM}}", upstream, "{{ADMIN}}", g.admin).Replace(cfg)
	g.launch(t, bin, cfg)
	t.Cleanup(func() {
		select {
		case <-g.done:
		default:
			g.cmd.Process.Kill()
			<-g.done
		}
	})
	g.waitHealthy(t)
	return g
}

// soakMem is a process's resident memory now and its high-water mark, in KiB.
type soakMem struct{ rss, hwm int64 }

// soakReadMem reads VmRSS and VmHWM from /proc/PID/status.
func soakReadMem(pid int) (soakMem, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return soakMem{}, err
	}
	var m soakMem
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			m.rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			m.hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if m.hwm == 0 {
		return m, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
	}
	return m, nil
}

// soakSampler samples a process's memory every interval, bounded in count,
// until stopped; it keeps the peaks. Reading VmHWM at the end would do for
// the peak, but the samples say when it happened.
type soakSampler struct {
	stop chan struct{}
	done chan struct{}
	// Owned by the sampling goroutine until done is closed.
	peakRSS, lastHWM int64
	peakAt           time.Duration
	samples          int
	goroutines       float64 // peak go_goroutines scraped alongside
	goodBanned       int     // samples in which /bans listed 127.0.0.1
	scrapeFailed     int     // samples in which /metrics did not answer
	trace            []soakPoint
}

// soakPoint is one sample: resident memory in KiB and go_goroutines.
type soakPoint struct {
	rss        int64
	goroutines float64
}

// series renders every n-th sample as "RSS/goroutines" ("?" when /metrics
// did not answer).
func (s *soakSampler) series(n int) string {
	var b strings.Builder
	for i := 0; i < len(s.trace); i += n {
		g := fmt.Sprintf("%.0f", s.trace[i].goroutines)
		if s.trace[i].goroutines < 0 {
			g = "?"
		}
		fmt.Fprintf(&b, "%d/%s ", s.trace[i].rss>>10, g)
	}
	return strings.TrimSpace(b.String())
}

func soakStartSampler(pid int, admin string, every time.Duration, limit int) *soakSampler {
	s := &soakSampler{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range limit {
			var p soakPoint
			if m, err := soakReadMem(pid); err == nil {
				s.samples++
				s.lastHWM = m.hwm
				p.rss = m.rss
				if m.rss > s.peakRSS {
					s.peakRSS, s.peakAt = m.rss, time.Since(start)
				}
			}
			if v, err := soakScrape(admin, "go_goroutines", ""); err == nil {
				p.goroutines = v[""]
				s.goroutines = max(s.goroutines, p.goroutines)
			} else {
				p.goroutines = -1 // /metrics did not answer within 10 s
				s.scrapeFailed++
			}
			s.trace = append(s.trace, p)
			if _, body, err := httpGet("http://" + admin + "/bans"); err == nil && strings.Contains(body, `"127.0.0.1"`) {
				s.goodBanned++
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *soakSampler) finish() {
	close(s.stop)
	<-s.done
}

// soakScrape fetches /metrics and sums the samples of the named metric by
// the value of label (all under "" when label is ""). It returns an error
// rather than failing the test, so goroutines may call it.
func soakScrape(admin, name, label string) (map[string]float64, error) {
	code, body, err := httpGet("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d", code)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		key := ""
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			if label != "" {
				for _, m := range labelRE.FindAllStringSubmatch(rest[:end], -1) {
					if m[1] == label {
						key = m[2]
					}
				}
			}
			rest = rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric line %q: %w", line, err)
		}
		out[key] += v
	}
	return out, sc.Err()
}

// soakCounter is a set of named counts shared by goroutines, with the
// first error seen under each name.
type soakCounter struct {
	mu   sync.Mutex
	m    map[string]int
	errs map[string]string
}

// fail counts name and remembers its first error.
func (c *soakCounter) fail(name string, err error) {
	c.add(name, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.errs == nil {
		c.errs = map[string]string{}
	}
	if _, ok := c.errs[name]; !ok {
		c.errs[name] = err.Error()
	}
}

func (c *soakCounter) firstErrs() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.errs))
	for k, v := range c.errs {
		out[k] = v
	}
	return out
}

func (c *soakCounter) add(name string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[name] += n
}

func (c *soakCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}
