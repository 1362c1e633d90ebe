package app

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
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

// The status page's upstream rows stay beside their own listener after a reload that removes one
// listener and adds another at the top of the list: the server's routes are then in another order than
// the file's (kept ones first, added ones last), and a row matched by position would show one
// listener's address beside another's upstream and health.
func TestUpstreamRowsAfterReorderingReload(t *testing.T) {
	up := kfakeBrokers(t, 2)
	dead := freeAddr(t) // nothing listens: its row must say down, beside its own listener
	for _, tc := range []struct {
		name        string
		first, kept string // listener addresses; ":0" ones are matched by what they bound
		added       string
	}{
		{"fixed addresses", freeAddr(t), freeAddr(t), freeAddr(t)},
		{"addresses ending in :0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
			cfg := func(ls ...[2]string) string {
				var b strings.Builder
				b.WriteString("admin: {address: \"\"}\ntimeouts: {shutdown: 2s}\nlisteners:\n")
				for _, l := range ls {
					fmt.Fprintf(&b, "  - {address: \"%s\", upstream: \"%s\"}\n", l[0], l[1])
				}
				return b.String()
			}
			writeFile(t, path, cfg([2]string{tc.first, up[1]}, [2]string{tc.kept, up[0]}))
			a, _ := reloadApp(t, path, -1)
			keptAddr := a.Server().Addrs()[1].String()
			writeFile(t, path, cfg([2]string{tc.added, dead}, [2]string{tc.kept, up[0]}))
			if err := a.Reload("test"); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(a.Server().Addrs()) != 2 {
				if time.Now().After(deadline) {
					t.Fatalf("%d listeners 5s after the reload, want 2", len(a.Server().Addrs()))
				}
				time.Sleep(10 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			rows := a.probeUpstreams(ctx, 2*time.Second)
			if len(rows) != 2 {
				t.Fatalf("%d rows, want 2: %+v", len(rows), rows)
			}
			for _, r := range rows {
				switch r.Upstream {
				case up[0]:
					if r.Listener != keptAddr || r.Err != nil {
						t.Errorf("kept listener's row: %s -> %s (err %v), want %s, up", r.Listener, r.Upstream, r.Err, keptAddr)
					}
				case dead:
					if r.Listener == keptAddr || strings.HasSuffix(r.Listener, ":0") || r.Err == nil {
						t.Errorf("added listener's row: %s -> %s (err %v), want its own bound address, down", r.Listener, r.Upstream, r.Err)
					}
					if tc.added != "127.0.0.1:0" && r.Listener != tc.added {
						t.Errorf("added listener's row shows %s, want %s", r.Listener, tc.added)
					}
				default:
					t.Errorf("row for upstream %s, which no listener has", r.Upstream)
				}
			}
		})
	}
}
