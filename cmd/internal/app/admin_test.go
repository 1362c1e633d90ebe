package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/limits"
)

// adminFor builds an app (nothing bound) with its abuse gate on and returns the admin handler.
func adminFor(t *testing.T) (*App, http.Handler) {
	t.Helper()
	a, err := Build(testConfig(t), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return a, adminHandler(a.srv, a.gate, a.reg)
}

func serve(h http.Handler, method, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// GET /bans lists every ban in force by its source: a bare address for a /32, a prefix for an IPv6 /64.
func TestAdminListsBans(t *testing.T) {
	a, h := adminFor(t)
	for _, ip := range []string{"192.0.2.7", "2001:db8:6b67:1::5"} {
		if _, banned := a.gate.Offence(netip.MustParseAddr(ip), "", "too_large", 1); !banned {
			t.Fatalf("%s not banned", ip)
		}
	}
	code, body := serve(h, http.MethodGet, "/bans")
	if code != http.StatusOK {
		t.Fatalf("GET /bans: %d %s", code, body)
	}
	var out []struct {
		Addr   string    `json:"addr"`
		Reason string    `json:"reason"`
		Since  time.Time `json:"since"`
		Until  time.Time `json:"until"`
		Count  int       `json:"count"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("GET /bans: %v in %s", err, body)
	}
	got := map[string]bool{}
	for _, b := range out {
		if b.Reason != "too_large" || b.Count != 1 || !b.Until.After(b.Since) {
			t.Errorf("GET /bans: incomplete entry %+v", b)
		}
		got[b.Addr] = true
	}
	if len(got) != 2 || !got["192.0.2.7"] || !got["2001:db8:6b67:1::/64"] {
		t.Errorf("GET /bans lists %s, want 192.0.2.7 and 2001:db8:6b67:1::/64", body)
	}
}

// GET /bans names the principal of the offence that earned a ban (a SASL user that had logged in), and
// leaves the field out for a source whose offence came before any login.
func TestAdminBansNamePrincipal(t *testing.T) {
	a, h := adminFor(t)
	a.gate.OffenceBy(netip.MustParseAddr("192.0.2.8"), limits.Offender{ClientID: "app", Principal: "alice"}, "too_large", 1)
	a.gate.OffenceBy(netip.MustParseAddr("192.0.2.9"), limits.Offender{ClientID: "anon"}, "unauthenticated", 1)
	code, body := serve(h, http.MethodGet, "/bans")
	if code != http.StatusOK {
		t.Fatalf("GET /bans: %d %s", code, body)
	}
	var out []map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out) != 2 {
		t.Fatalf("GET /bans: %v in %s", err, body)
	}
	for _, b := range out {
		p, has := b["principal"]
		switch b["addr"] {
		case "192.0.2.8":
			if p != "alice" {
				t.Errorf("ban of alice's source: principal %v in %s", p, body)
			}
		case "192.0.2.9":
			if has {
				t.Errorf("ban before any login names principal %v", p)
			}
		}
	}
}

// DELETE /bans/{ip-or-prefix} lifts the ban of the source that holds an address, or of a prefix no wider
// than a source; anything else is a 400, and a source without a ban a 404.
func TestAdminUnban(t *testing.T) {
	tests := []struct {
		name, ban, target string
		code              int
		body              string
	}{
		{"address", "192.0.2.7", "192.0.2.7", 200, "unbanned 192.0.2.7"},
		{"IPv4-mapped spelling", "192.0.2.7", "::ffff:192.0.2.7", 200, "unbanned 192.0.2.7"},
		{"never banned", "192.0.2.7", "192.0.2.99", 404, "no active ban for 192.0.2.99"},
		{"not an address", "192.0.2.7", "not-an-ip", 400, ""},
		{"zoned address", "fe80::1", "fe80::1%25lo", 400, ""},
		{"IPv6 prefix", "2001:db8:6b67:1::5", "2001:db8:6b67:1::/64", 200, "unbanned 2001:db8:6b67:1::/64"},
		{"address inside the /64", "2001:db8:6b67:1::5", "2001:db8:6b67:1::abcd", 200, "unbanned 2001:db8:6b67:1::/64"},
		{"prefix wider than a source", "2001:db8:6b67:1::5", "2001:db8:6b67::/48", 400, ""},
		{"everything", "::1", "::/0", 400, ""},
		{"IPv4 prefix wider than /32", "192.0.2.7", "192.0.2.0/24", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, h := adminFor(t)
			if _, banned := a.gate.Offence(netip.MustParseAddr(tt.ban), "", "too_large", 1); !banned {
				t.Fatalf("%s not banned", tt.ban)
			}
			code, body := serve(h, http.MethodDelete, "/bans/"+tt.target)
			if code != tt.code || (tt.body != "" && body != tt.body) {
				t.Errorf("DELETE /bans/%s: %d %q, want %d %q", tt.target, code, body, tt.code, tt.body)
			}
			if lifted := a.gate.ActiveBans() == 0; lifted != (tt.code == 200) {
				t.Errorf("DELETE /bans/%s: %d bans left", tt.target, a.gate.ActiveBans())
			}
			if tt.code == 200 {
				if code, _ := serve(h, http.MethodDelete, "/bans/"+tt.target); code != http.StatusNotFound {
					t.Errorf("DELETE /bans/%s twice: %d, want 404", tt.target, code)
				}
			}
		})
	}
}

// Without the abuse gate there are no bans to list or lift.
func TestAdminBansWithoutGate(t *testing.T) {
	cfg := testConfig(t)
	cfg.Abuse.Enabled = false
	a, err := Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	h := adminHandler(a.srv, a.gate, a.reg)
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		if code, body := serve(h, m, "/bans/192.0.2.7"); m == http.MethodDelete && code != http.StatusNotFound {
			t.Errorf("DELETE /bans/ without a gate: %d %s, want 404", code, body)
		}
	}
	if code, body := serve(h, http.MethodGet, "/bans"); code != http.StatusNotFound {
		t.Errorf("GET /bans without a gate: %d %s, want 404", code, body)
	}
}

// /metrics carries the pool's and the gate's gauges: the bench reads the pool's high water from it.
func TestAdminMetricsCarryGauges(t *testing.T) {
	a, h := adminFor(t)
	a.gate.Offence(netip.MustParseAddr("192.0.2.7"), "", "too_large", 1)
	code, body := serve(h, http.MethodGet, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	for _, want := range []string{
		"kafkaguard_pool_bytes_in_use 0",
		"kafkaguard_pool_bytes_high_water 0",
		"kafkaguard_pool_bytes_capacity 6.7108864e+07",
		"kafkaguard_bans_active 1",
		"kafkaguard_abuse_tracked_sources 1",
		`kafkaguard_abuse_sources_evicted_total{state="banned"} 0`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
