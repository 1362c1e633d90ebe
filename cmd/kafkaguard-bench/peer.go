package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
)

// peer is another proxy measured as path E (--peer): any command line that
// listens on {listen} and forwards to {upstream}, run through sh, e.g.
//
//	--peer 'kafka-proxy server --bootstrap-server-mapping "{upstream},{listen}"'
//
// Clients dial every broker through it, as through the relay, so a peer
// that rewrites metadata and one that does not are measured alike (the
// bench's upstream is one broker).
type peer struct {
	cmd     *exec.Cmd
	pid     int
	addr    string
	logPath string
	done    chan struct{}
}

func startPeer(pin pinning, cmdline, upstream, logPath string) (*peer, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	line := strings.NewReplacer("{listen}", listen, "{upstream}", upstream).Replace(cmdline)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// exec, so the pid whose CPU and RSS are read is the peer's, not sh's.
	cmd, err := pin.command("sh", "-c", "exec "+line)
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start peer: %w", err)
	}
	p := &peer{cmd: cmd, pid: cmd.Process.Pid, addr: listen, logPath: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	switch awaitStart(p.done, func() bool {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
	case startExited:
		return nil, fmt.Errorf("peer %q exited at start (see %s)", line, logPath)
	case startTimedOut:
		p.stop()
		return nil, fmt.Errorf("peer %q not listening on %s within 30s (see %s)", line, listen, logPath)
	}
	return p, nil
}

// PID is the process CPU and RSS are read from.
func (p *peer) PID() int { return p.pid }

// FreeOSMemory does nothing: a peer has no way to be asked. (No figure
// that needs it is taken on path E.)
func (p *peer) FreeOSMemory() error { return nil }

// stop sends SIGTERM and kills after 10 s.
func (p *peer) stop() { terminate(p.cmd, p.done, 10*time.Second) }
