package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asKafkaguard, set in a child's environment, makes the test binary run
// main with its arguments: the tests below signal a real process.
const asKafkaguard = "KGTEST_RUN_AS_KAFKAGUARD"

func TestMain(m *testing.M) {
	if os.Getenv(asKafkaguard) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// silentBroker reads requests and never answers; got receives a token once
// a connection has sent bytes.
func silentBroker(t *testing.T) (addr string, got <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var b [512]byte
				for {
					if _, err := c.Read(b[:]); err != nil {
						return
					}
					select {
					case ch <- struct{}{}:
					default:
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), ch
}

// kafkaguardProc is the binary under test, running `run --config`.
type kafkaguardProc struct {
	cmd    *exec.Cmd
	lines  chan map[string]any // stderr's JSON log lines
	exited chan struct{}       // closed once the process ended; then err is its Wait error
	err    error
	path   string // the config file it runs with
}

// heartbeatThrough waits for p's started line, dials its one listener and sends a Heartbeat, and fails
// the test with notReached unless the broker behind (silentBroker's got) sees it within 5 s. The caller
// closes the connection.
func heartbeatThrough(t *testing.T, p *kafkaguardProc, got <-chan struct{}, notReached string) net.Conn {
	t.Helper()
	started := p.waitLine(t, "kafkaguard started", 10*time.Second)
	ls, _ := started["listeners"].([]any)
	if len(ls) != 1 {
		t.Fatalf("started line lists listeners %v", started["listeners"])
	}
	c, err := net.DialTimeout("tcp", ls[0].(string), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(heartbeatFrame()); err != nil {
		c.Close()
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		c.Close()
		t.Fatal(notReached)
	}
	return c
}

func startKafkaguard(t *testing.T, yml string) *kafkaguardProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "--config", path)
	cmd.Env = append(os.Environ(), asKafkaguard+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &kafkaguardProc{cmd: cmd, lines: make(chan map[string]any, 1024), exited: make(chan struct{}), path: path}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"message": sc.Text()}
			}
			select {
			case p.lines <- m:
			default: // nobody is looking for more lines
			}
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // a no-op once it exited
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
		}
	})
	return p
}

// waitLine returns the first log line whose message starts with prefix.
func (p *kafkaguardProc) waitLine(t *testing.T, prefix string, d time.Duration) map[string]any {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-p.lines:
			if msg, _ := m["message"].(string); strings.HasPrefix(msg, prefix) {
				return m
			}
		case <-timeout:
			t.Fatalf("no log line %q within %v", prefix, d)
		}
	}
}

// waitExit waits up to d for the process to end and returns its exit code
// and how long it took.
func (p *kafkaguardProc) waitExit(t *testing.T, d time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case <-p.exited:
		err := p.err
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("wait: %v", err)
		}
		return code, time.Since(start)
	case <-time.After(d):
		p.cmd.Process.Kill()
		t.Fatalf("kafkaguard still running %v after the signal", d)
		return 0, 0
	}
}

// heartbeatFrame is a Heartbeat v0 request, which kafkaguard forwards as is.
func heartbeatFrame() []byte {
	b := make([]byte, 4, 64)
	b = binary.BigEndian.AppendUint16(b, 12) // Heartbeat
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint16(b, 4)
	b = append(b, "test"...)
	b = append(b, make([]byte, 12)...) // group "", generation, member ""
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// The real binary exits within timeouts.shutdown + 1s when a broker never
// answers a request it owes a response to, and at once on a second signal.
func TestSignalExitsWhileBrokerOwesResponse(t *testing.T) {
	cases := []struct {
		name     string
		shutdown time.Duration
		second   bool          // send a second SIGTERM once draining
		within   time.Duration // from the (last) signal to exit
		code     int
	}{
		{"one SIGTERM: exit by timeouts.shutdown", time.Second, false, time.Second + time.Second, 1},
		{"second SIGTERM: exit at once", time.Minute, true, time.Second, 128 + int(syscall.SIGTERM)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			broker, got := silentBroker(t)
			p := startKafkaguard(t, fmt.Sprintf(`
listeners: [{address: 127.0.0.1:0, upstream: %s}]
admin: {address: %s}
timeouts: {shutdown: %s}
log: {level: info, format: json}
`, broker, freePort(t), tc.shutdown))
			c := heartbeatThrough(t, p, got, "the request never reached the broker")
			defer c.Close()
			p.cmd.Process.Signal(syscall.SIGTERM)
			if tc.second {
				p.waitLine(t, "signal received", 5*time.Second)
				p.cmd.Process.Signal(syscall.SIGTERM)
			}
			code, took := p.waitExit(t, tc.within+5*time.Second)
			t.Logf("exited with status %d %v after the signal", code, took.Round(time.Millisecond))
			if took > tc.within {
				t.Errorf("exited %v after the signal, want within %v", took.Round(time.Millisecond), tc.within)
			}
			if code != tc.code {
				t.Errorf("exit status %d, want %d", code, tc.code)
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := io.ReadAll(c); err != nil {
				t.Errorf("client connection not closed by the exit: %v", err)
			}
		})
	}
}
