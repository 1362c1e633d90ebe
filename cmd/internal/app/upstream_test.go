package app

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// At start, a listener whose upstream does not answer gets one warning naming both, from the
// background: Start has returned and the listener accepts by then. One that answers gets none.
func TestStartWarnsUnansweredUpstream(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	cfg := testConfig(t) // its listener's upstream is a free port: nothing answers
	dead := cfg.Listeners[0].Upstream
	cfg.Listeners = append(cfg.Listeners, cfg.Listeners[0])
	cfg.Listeners[1].Upstream = up.Addr().String()
	var logs lockedBuffer
	a, err := Build(cfg, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	listener := a.Server().Addrs()[0].String()
	deadline := time.Now().Add(10 * time.Second)
	for logs.count("upstream does not answer at start") == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	a.Stop() // waits for the probe; no line comes after
	logs.mu.Lock()
	out := logs.b.String()
	logs.mu.Unlock()
	var warned []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "upstream does not answer at start") {
			warned = append(warned, line)
		}
	}
	if len(warned) != 1 {
		t.Fatalf("%d warnings, want 1 (for %s):\n%s", len(warned), dead, out)
	}
	for _, want := range []string{`"level":"warn"`, `"listener":"` + listener + `"`, `"upstream":"` + dead + `"`, `"error":`} {
		if !strings.Contains(warned[0], want) {
			t.Errorf("warning lacks %s: %s", want, warned[0])
		}
	}
}
