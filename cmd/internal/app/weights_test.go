package app

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/kafkaguard/kafkaguard/config"
)

// A weight of 0 makes that kind of offence harmless ("0 = harmless", says
// deploy/kafkaguard.yaml): a source that commits only such offences is never
// banned, however many. The weights travel from the config through the app
// into the proxy unchanged; a proxy that put its own default back in place of
// a zero would ban here.
func TestZeroWeightNeverBans(t *testing.T) {
	const offences = 5
	tests := []struct {
		name       string
		weights    config.Weights
		wantBanned bool
	}{
		{"closed 0, rejected_produce 0", config.Weights{Closed: 0, RejectedProduce: 0}, false},
		{"closed 0, rejected_produce default", config.Weights{Closed: 0, RejectedProduce: 0.25}, false},
		// The control: the same offences with a positive weight ban, so the
		// rows above would see a ban if there were one.
		{"closed 1", config.Weights{Closed: 1, RejectedProduce: 0}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t) // offences_before_ban: 1
			cfg.Abuse.Weights = tt.weights
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			a := startApp(t, cfg)
			defer a.Stop()
			addr := a.Server().Addrs()[0].String()
			refused := 0
			for range offences {
				// A declared 50 MiB frame: over every limit, closed at once as
				// too_large, an offence of the closed kind.
				if !tooLarge(t, addr) {
					refused++
				}
			}
			bans := a.gate.Bans()
			if banned := len(bans) > 0; banned != tt.wantBanned {
				t.Fatalf("banned = %v after %d too_large offences with weights %+v (bans %+v), want %v",
					banned, offences, tt.weights, bans, tt.wantBanned)
			}
			if !tt.wantBanned && refused > 0 {
				t.Errorf("%d of %d connections refused at accept with weights %+v", refused, offences, tt.weights)
			}
		})
	}
}

// tooLarge connects to addr, declares a 50 MiB request and waits for the
// close. It reports whether kafkaguard read the declaration (false when the
// connection was refused at accept, before a byte was read).
func tooLarge(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false // reset at accept, before the handshake completed
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{0x03, 0x20, 0x00, 0x01}); err != nil {
		return false // reset at accept
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("connection not closed after a 50 MiB declaration")
		}
		return false // reset: refused at accept
	}
	return true
}
