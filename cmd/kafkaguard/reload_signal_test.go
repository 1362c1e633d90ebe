package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rewriteUnseen replaces the config file's content in place with text of the same length and puts its
// modification time back, so the file watcher sees no change and only SIGHUP can reload it.
func rewriteUnseen(t *testing.T, path, text string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(text)) != st.Size() {
		t.Fatalf("replacement is %d bytes, the file %d", len(text), st.Size())
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// SIGHUP reloads the real binary's config: a request kafkaguard forwarded a moment ago is refused on
// the same connection once the reloaded file denies its API. An invalid file then changes nothing and
// the failure names the key.
func TestSIGHUPReloadsConfig(t *testing.T) {
	broker, got := silentBroker(t)
	head := fmt.Sprintf("listeners: [{address: 127.0.0.1:0, upstream: %s}]\nadmin: {address: %s}\nlog: {level: info, format: json}\n",
		broker, freePort(t))
	pad := func(s string) string { return s + strings.Repeat(" ", 40-len(s)) + "\n" }
	p := startKafkaguard(t, head+pad("limits: {deny_api: [DeleteTopics]}"))
	c := heartbeatThrough(t, p, got, "the Heartbeat did not reach the broker before the reload")
	defer c.Close()

	rewriteUnseen(t, p.path, head+pad("limits: {deny_api: [Heartbeat]}"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	line := p.waitLine(t, "config reloaded", 5*time.Second)
	if line["trigger"] != "SIGHUP" {
		t.Fatalf("reload line %v, want trigger SIGHUP", line)
	}
	if _, err := c.Write(heartbeatFrame()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("the next Heartbeat on the same connection: %v, want it refused and the connection closed", err)
	}

	rewriteUnseen(t, p.path, head+pad("limits: {deny_api: [Heartbeet]}"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	line = p.waitLine(t, "config reload failed", 5*time.Second)
	if key, _ := line["key"].(string); !strings.HasPrefix(key, "limits.deny_api") {
		t.Fatalf("failure line %v does not name limits.deny_api", line)
	}
	c2, err := net.DialTimeout("tcp", c.RemoteAddr().String(), 2*time.Second) // the one listener
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write(heartbeatFrame())
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c2); err != nil {
		t.Fatalf("Heartbeat after the failed reload: %v, want it still denied (the running config stays)", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code, _ := p.waitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}
