package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The bench measures the kafkaguard binary that ships: it builds the main
// module's ./cmd/kafkaguard (or takes --kafkaguard), runs it as a child
// process with a config file, as an operator would, and reads its figures
// from the admin server's /metrics. Nothing of kafkaguard is linked into
// the bench, so the bench's dependencies (charts) stay out of the product's
// go.mod.

// guardConfig is kafkaguard's config for the bench: config.Default() in all
// but the listener and the admin address (1 MiB requests, a 64 MiB pool of
// 32 KiB chunks, the abuse gate on, info logs).
const guardConfig = `listeners:
  - address: {{LISTEN}}
    upstream: {{UPSTREAM}}{{TLS}}
admin:
  address: {{ADMIN}}
log: {level: info, format: json}
`

// mainModule is the module path whose root holds ./cmd/kafkaguard.
const mainModule = "github.com/kafkaguard/kafkaguard"

// buildGuard builds kafkaguard from the main module around the working
// directory into dir and returns the binary's path.
func buildGuard(ctx context.Context, dir string) (string, error) {
	root, err := mainModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kafkaguard")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kafkaguard")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/kafkaguard in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// mainModuleRoot walks up from the working directory to the go.mod that
// declares mainModule (the bench's own go.mod is nested below it).
func mainModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 32 {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			sc := bufio.NewScanner(f)
			sc.Scan()
			f.Close()
			if strings.TrimSpace(sc.Text()) == "module "+mainModule {
				return dir, nil
			}
		}
		up := filepath.Dir(dir)
		if up == dir {
			break
		}
		dir = up
	}
	return "", fmt.Errorf("no go.mod of %s above the working directory: run the bench inside the kafkaguard repository or pass --kafkaguard", mainModule)
}

// guard is a running kafkaguard process.
type guard struct {
	cmd     *exec.Cmd
	pid     int
	addr    string // the listener clients dial
	admin   string // the admin server: /healthz, /metrics, /debug/
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error
	http    *http.Client
}

// startGuard writes a config for one listener in front of upstream (serving
// TLS with t's certificate when t is not nil), starts
// bin run with it (output appended to logPath) and waits up to 30 s for
// /healthz.
func startGuard(pin pinning, bin, upstream, logPath string, t *benchTLS) (*guard, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg := strings.NewReplacer("{{LISTEN}}", listen, "{{UPSTREAM}}", upstream, "{{TLS}}", t.guardSection(), "{{ADMIN}}", admin).Replace(guardConfig)
	cfgPath := strings.TrimSuffix(logPath, ".log") + ".yaml"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd, err := pin.command(bin, "run", "--config", cfgPath)
	if err != nil {
		logf.Close()
		return nil, err
	}
	// kafkaguard reads KAFKAGUARD_* as config overrides: keep the shell's
	// away from it, so the bench measures the config above.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKAGUARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start kafkaguard: %w", err)
	}
	g := &guard{cmd: cmd, pid: cmd.Process.Pid, addr: listen, admin: admin, logPath: logPath,
		done: make(chan struct{}), http: &http.Client{Timeout: 60 * time.Second}}
	go func() {
		g.waitErr = cmd.Wait()
		logf.Close()
		close(g.done)
	}()
	switch awaitStart(g.done, func() bool {
		body, err := g.get("/healthz", 2*time.Second)
		return err == nil && strings.TrimSpace(body) == "ok"
	}) {
	case startExited:
		return nil, fmt.Errorf("kafkaguard exited at start: %v (see %s)", g.waitErr, logPath)
	case startTimedOut:
		g.stop()
		return nil, fmt.Errorf("kafkaguard /healthz not ready within 30s (see %s)", logPath)
	}
	return g, nil
}

// terminate sends SIGTERM to cmd's process unless it has ended (done is closed), and kills it if it has
// not ended grace later; it returns once done is closed, reporting whether it had to kill.
func terminate(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) (killed bool) {
	select {
	case <-done:
		return false
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return false
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
		return true
	}
}

// startOutcome is how a child process's start ended.
type startOutcome int

const (
	startReady startOutcome = iota
	startExited
	startTimedOut
)

// awaitStart polls ready every 50 ms until it holds, the process ends (done closes), or 30 s pass: the
// wait kafkaguard and every peer get before a workload runs on them.
func awaitStart(done <-chan struct{}, ready func() bool) startOutcome {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return startExited
		default:
		}
		if ready() {
			return startReady
		}
		if time.Now().After(deadline) {
			return startTimedOut
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// get fetches an admin path and returns its body; a status other than 200
// is an error.
func (g *guard) get(path string, timeout time.Duration) (string, error) {
	return g.do(http.MethodGet, path, timeout)
}

func (g *guard) do(method, path string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+g.admin+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := g.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// metrics scrapes /metrics and returns every unlabelled or labelled series
// (name{labels} as printed) with its value.
func (g *guard) metrics() (map[string]float64, error) {
	body, err := g.get("/metrics", 10*time.Second)
	if err != nil {
		return nil, err
	}
	return parseMetrics(body), nil
}

// parseMetrics reads the Prometheus text format's sample lines.
func parseMetrics(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// PID is the process CPU and RSS are read from.
func (g *guard) PID() int { return g.pid }

// FreeOSMemory asks kafkaguard to collect garbage and return freed memory
// to the OS (the admin server's POST /debug/free-os-memory).
func (g *guard) FreeOSMemory() error {
	_, err := g.do(http.MethodPost, "/debug/free-os-memory", 30*time.Second)
	return err
}

// profile saves kafkaguard's CPU profile of the next seconds to path, from
// the admin server's /debug/pprof/profile; it returns when the profile is
// written.
func (g *guard) profile(path string, seconds int) error {
	body, err := g.get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), time.Duration(seconds+30)*time.Second)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(body), 0o644)
}

// allocs saves kafkaguard's allocation profile (after a GC) to path.
func (g *guard) allocs(path string) error {
	body, err := g.get("/debug/pprof/allocs?gc=1", 30*time.Second)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(body), 0o644)
}

// stop sends SIGTERM and waits up to 40 s (kafkaguard drains for up to
// timeouts.shutdown, 30 s), then kills.
func (g *guard) stop() error {
	if terminate(g.cmd, g.done, 40*time.Second) {
		return fmt.Errorf("kafkaguard (pid %d) did not stop within 40s of SIGTERM", g.pid)
	}
	var ee *exec.ExitError
	if errors.As(g.waitErr, &ee) {
		return fmt.Errorf("kafkaguard exited with %v (see %s)", g.waitErr, g.logPath)
	}
	return nil
}
