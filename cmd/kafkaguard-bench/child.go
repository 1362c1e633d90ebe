package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The bench re-executes itself with childModeEnv set to run a relay in a
// process of its own, so its RSS and CPU are its own. (kafkaguard is the
// built binary: see guard.go.)
const (
	childModeEnv     = "KAFKAGUARD_BENCH_CHILD"
	childUpstreamEnv = "KAFKAGUARD_BENCH_UPSTREAM"
	modeRelay        = "relay"
	// modePeerRelay is the relay as --peer runs any proxy: listening on
	// childListenEnv until SIGTERM, with no command channel. It lets the
	// tests (and a reader checking path E against path C) use --peer
	// without another proxy installed.
	modePeerRelay  = "peer-relay"
	childListenEnv = "KAFKAGUARD_BENCH_LISTEN"
	modeSFRelay    = "sfrelay"
)

// child is a running subprocess seen from the parent. It prints its listen
// address on its first line, then answers one line per command on stdin
// and exits when stdin closes.
type child struct {
	mode string
	cmd  *exec.Cmd
	pid  int
	addr string
	mu   sync.Mutex
	in   io.WriteCloser
	out  *bufio.Reader
	log  *os.File
}

func startChild(pin pinning, mode, upstream, logPath string, env ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start %s child: %w", mode, err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s child: %w", mode, err)
	}
	cmd, err := pin.command(exe)
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s child: %w", mode, err)
	}
	cmd.Env = append(append(os.Environ(), childModeEnv+"="+mode, childUpstreamEnv+"="+upstream), env...)
	cmd.Stderr = logf
	in, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s child: %w", mode, err)
	}
	c := &child{mode: mode, cmd: cmd, pid: cmd.Process.Pid, in: in, out: bufio.NewReader(out), log: logf}
	line, err := c.readLine(10 * time.Second)
	if err != nil || !strings.HasPrefix(line, "addr ") {
		c.stop()
		return nil, fmt.Errorf("start %s child: first line %q: %v (see %s)", mode, line, err, logPath)
	}
	c.addr = strings.TrimPrefix(line, "addr ")
	return c, nil
}

func (c *child) readLine(timeout time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := c.out.ReadString('\n')
		ch <- res{strings.TrimSpace(s), err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(timeout):
		return "", fmt.Errorf("%s child: no answer within %v", c.mode, timeout)
	}
}

// call sends one command and returns the child's one-line answer.
func (c *child) call(cmd string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
		return "", fmt.Errorf("%s child %q: %w", c.mode, cmd, err)
	}
	s, err := c.readLine(30 * time.Second)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(s, "err ") {
		return "", fmt.Errorf("%s child %q: %s", c.mode, cmd, s[4:])
	}
	return s, nil
}

// PID is the process CPU and RSS are read from.
func (c *child) PID() int { return c.pid }

// FreeOSMemory makes the child collect garbage and return freed memory to
// the OS.
func (c *child) FreeOSMemory() error {
	_, err := c.call("gc")
	return err
}

func (c *child) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	c.log.Close()
}

// runChild is main for a child process.
func runChild(mode string) int {
	upstream := os.Getenv(childUpstreamEnv)
	if mode == modePeerRelay {
		return runPeerRelay(os.Getenv(childListenEnv), upstream)
	}
	var (
		addr    string
		cleanup func()
		err     error
	)
	switch mode {
	case modeRelay:
		addr, cleanup, err = startRelay(upstream)
	case modeSFRelay:
		addr, cleanup, err = startSFRelay(upstream)
	case modeTLSRelay:
		addr, cleanup, err = startTLSRelay(upstream)
	default:
		err = fmt.Errorf("unknown child mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	fmt.Printf("addr %s\n", addr)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		reply := "ok"
		switch fields[0] {
		case "gc":
			debug.FreeOSMemory()
		default:
			reply = "err unknown command " + fields[0]
		}
		fmt.Println(reply)
	}
	return 0
}

// runPeerRelay serves the plain relay on listen until SIGTERM or SIGINT.
func runPeerRelay(listen, upstream string) int {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go acceptLoop(ln, func(c net.Conn) { relayConn(c, upstream) })
	<-ctx.Done()
	ln.Close()
	return 0
}

// startRelay runs the plain relay: every accepted connection is joined, on
// its first byte, to a fresh upstream connection with io.Copy both ways (splice on Linux), no
// parsing at all. It is the floor any proxy can reach.
func startRelay(upstream string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go acceptLoop(ln, func(c net.Conn) { relayConn(c, upstream) })
	return ln.Addr().String(), func() { ln.Close() }, nil
}

func relayConn(c net.Conn, upstream string) {
	defer c.Close()
	// The broker is dialled on the client's first byte, as kafkaguard
	// dials on its first frame, so a silent connection is one socket in
	// either (the idle-silent workload).
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return
	}
	up, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	if _, err := up.Write(first[:]); err != nil {
		return
	}
	pipeBoth(c, up)
}

// pipeBoth copies c to up and up to c until both directions end, half-closing each side's write when
// its source ends, as a broker connection expects. c and up may be TCP or TLS connections.
func pipeBoth(c, up net.Conn) {
	done := make(chan struct{})
	go func() {
		io.Copy(c, up)
		closeWrite(c)
		close(done)
	}()
	io.Copy(up, c)
	closeWrite(up)
	<-done
}

// closeWrite half-closes c when it can (TCP and TLS connections can).
func closeWrite(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	}
}

// acceptLoop runs handle in a goroutine for every connection ln accepts,
// until ln is closed.
func acceptLoop(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		go handle(c)
	}
}
