package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// guard is a running kafkaguard binary: one listener per upstream broker,
// its admin server, and its log file.
type guard struct {
	cmd       *exec.Cmd
	addrs     []string // listener addresses, in upstream order
	upstreams []string
	admin     string
	logPath   string
	done      chan struct{}
	waitErr   error
}

// guardConfig is the YAML a test runs kafkaguard with; {{LISTENERS}} and
// {{ADMIN}} are filled in by startGuard.
const guardConfig = `listeners:
{{LISTENERS}}
admin:
  address: {{ADMIN}}
limits:
  max_request_bytes: 1MiB
  api: {Metadata: 64KiB}
timeouts: {header: 10s, frame: 30s, idle: 10m, dial: 2s, write: 30s, shutdown: 5s}
pool: {chunk_bytes: 32KiB, total_bytes: 64MiB, wait: 5s}
abuse:
  enabled: true
  offences_before_ban: 5
  offence_window: 1m
  ban_min: 5m
  ban_max: 1h
  connection_rate_per_ip: 200/s
log: {level: info, format: json}
`

// startGuard runs kafkaguard in front of upstreams and waits for /healthz.
// It is stopped with SIGTERM, by its pid, when the test ends; a non-zero exit
// (for instance the race detector's 66) fails the test.
func startGuard(t *testing.T, upstreams []string) *guard {
	t.Helper()
	return launchGuard(t, upstreams, "", nil)
}

// launchGuard is the one launcher behind startGuard, startSaslGuard and startTLSGuard: a listener on a
// free port per upstream, each with the YAML lines in listenerExtra ("" = none; each line indented
// under the listener and ending in a newline), guardConfig passed through edit (nil = as is), stopped
// and waited for as startGuard says.
func launchGuard(t *testing.T, upstreams []string, listenerExtra string, edit func(cfg string) string) *guard {
	t.Helper()
	g := &guard{upstreams: upstreams, done: make(chan struct{})}
	var ls strings.Builder
	for _, u := range upstreams {
		a := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		g.addrs = append(g.addrs, a)
		fmt.Fprintf(&ls, "  - address: %s\n    upstream: %s\n%s", a, u, listenerExtra)
	}
	g.admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := strings.NewReplacer("{{LISTENERS}}", strings.TrimRight(ls.String(), "\n"), "{{ADMIN}}", g.admin).Replace(guardConfig)
	if edit != nil {
		cfg = edit(cfg)
	}
	g.launch(t, binPath, cfg)
	t.Cleanup(func() { g.stop(t) })
	g.waitHealthy(t)
	return g
}

// waitHealthy waits up to 30 s for the started process's /healthz, and fails
// the test with the log's tail if it exits or never answers.
func (g *guard) waitHealthy(t *testing.T) {
	t.Helper()
	ok := eventually(30*time.Second, 100*time.Millisecond, func() bool {
		select {
		case <-g.done:
			return true
		default:
		}
		code, _, err := httpGet("http://" + g.admin + "/healthz")
		return err == nil && code == http.StatusOK
	})
	select {
	case <-g.done:
		t.Fatalf("kafkaguard exited at start: %v\n%s", g.waitErr, g.logTail(40))
	default:
	}
	if !ok {
		t.Fatalf("kafkaguard /healthz not ready in 30s\n%s", g.logTail(40))
	}
}

// launch writes cfg to a temporary file and starts bin run with it, its
// output in g.logPath; g.done closes when the process has exited (g.waitErr
// then holds how).
func (g *guard) launch(t *testing.T, bin, cfg string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kafkaguard.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	g.logPath = filepath.Join(dir, "kafkaguard.log")
	logf, err := os.Create(g.logPath)
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(bin, "run", "--config", cfgPath)
	// kafkaguard reads KAFKAGUARD_* as config overrides and rejects unknown
	// keys: keep whatever the developer's shell has of them away from it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKAGUARD_") {
			g.cmd.Env = append(g.cmd.Env, kv)
		}
	}
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		logf.Close()
		close(g.done)
	}()
}

// stop sends SIGTERM to kafkaguard's pid and waits for a clean exit.
func (g *guard) stop(t *testing.T) {
	t.Helper()
	select {
	case <-g.done:
	default:
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(30 * time.Second):
			g.cmd.Process.Kill()
			<-g.done
			t.Errorf("kafkaguard (pid %d) did not stop within 30s of SIGTERM", g.cmd.Process.Pid)
		}
	}
	var ee *exec.ExitError
	if errors.As(g.waitErr, &ee) && !ee.Exited() {
		return // killed above; already reported
	}
	// KG_E2E_KEEP_LOGS=DIR keeps every guard's whole log (t.TempDir goes
	// away): a flaky run's evidence outlives the test.
	if dir := os.Getenv("KG_E2E_KEEP_LOGS"); dir != "" {
		name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
		if raw, err := os.ReadFile(g.logPath); err == nil {
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano())), raw, 0o644)
		}
	}
	if g.waitErr != nil {
		t.Errorf("kafkaguard exited with %v\n%s", g.waitErr, g.logTail(80))
	} else if t.Failed() {
		t.Logf("kafkaguard log tail:\n%s", g.logTail(40))
	}
}

func (g *guard) logTail(n int) string {
	raw, err := os.ReadFile(g.logPath)
	if err != nil {
		return err.Error()
	}
	return tail(raw, n)
}

// log returns kafkaguard's whole log so far.
func (g *guard) log() string {
	raw, _ := os.ReadFile(g.logPath)
	return string(raw)
}

// readyz returns the status of GET /readyz (0 if the request failed).
func (g *guard) readyz() int {
	code, _, err := httpGet("http://" + g.admin + "/readyz")
	if err != nil {
		return 0
	}
	return code
}

// isGuardAddr says whether addr is one of kafkaguard's listeners.
func (g *guard) isGuardAddr(addr string) bool {
	for _, a := range g.addrs {
		if a == addr {
			return true
		}
	}
	return false
}
