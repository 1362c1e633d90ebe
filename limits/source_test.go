package limits

import (
	"net/netip"
	"testing"
	"time"
)

// Addresses are judged by source prefix: every address of an IPv6 /64 (by default) is one source for
// bans, caps and rates, so a host cannot dodge a ban by moving to the next address of its own network.
func TestGateSourcePrefix(t *testing.T) {
	tests := []struct {
		name       string
		v4, v6     int    // options; 0 means the default
		offender   string // earns a ban
		sibling    string // in the same source: shares the ban
		stranger   string // in another source: unaffected
		wantSource string
	}{
		{"ipv6 default /64", 0, 0, "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:3::1", "2001:db8:1:2::/64"},
		{"ipv6 /56", 0, 56, "2001:db8:1:200::1", "2001:db8:1:2ff::9", "2001:db8:1:300::1", "2001:db8:1:200::/56"},
		{"ipv6 /128", 0, 128, "2001:db8::1", "2001:db8::1", "2001:db8::2", "2001:db8::1"},
		{"ipv4 default /32", 0, 0, "192.0.2.7", "::ffff:192.0.2.7", "192.0.2.8", "192.0.2.7"},
		{"ipv4 /24", 24, 0, "192.0.2.7", "192.0.2.200", "192.0.3.7", "192.0.2.0/24"},
		{"loopback ::1 in ::/64", 0, 0, "::1", "::2", "::1:0:0:0:1", "::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := newFakeClock(), &recorder{}
			o := banOptions(c, r)
			o.IPv4Prefix, o.IPv6Prefix = tt.v4, tt.v6
			g := newGate(t, o)
			offender, sibling, stranger := netip.MustParseAddr(tt.offender), netip.MustParseAddr(tt.sibling),
				netip.MustParseAddr(tt.stranger)
			b, banned := offend(g, c, offender, 5)
			if !banned {
				t.Fatal("not banned")
			}
			if got := SourceString(b.Source); got != tt.wantSource {
				t.Errorf("ban source %s, want %s", got, tt.wantSource)
			}
			if got := g.Bans(); len(got) != 1 || SourceString(got[0].Source) != tt.wantSource {
				t.Errorf("Bans() = %+v, want one of %s", got, tt.wantSource)
			}
			if ok, reason := g.Admit(sibling); ok || reason != ReasonBanned {
				t.Errorf("sibling %s admitted (%q), want refused as banned", sibling, reason)
			}
			if ok, reason := g.Admit(stranger); !ok {
				t.Errorf("stranger %s refused: %q", stranger, reason)
			}
			// Unban by any address of the source.
			if !g.Unban(sibling) {
				t.Fatal("Unban by a sibling address lifted nothing")
			}
			if ok, reason := g.Admit(offender); !ok {
				t.Errorf("offender refused after Unban: %q", reason)
			}
		})
	}
}

// The connection cap and the rate are per source too.
func TestGateSourcePrefixCapAndRate(t *testing.T) {
	c := newFakeClock()
	g := newGate(t, GateOptions{MaxConnsPerIP: 2, RatePerSecond: 3, RateBurst: 3, Now: c.Now})
	a := func(i int) netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
	}
	if ok, _ := g.Admit(a(1)); !ok {
		t.Fatal("first refused")
	}
	if ok, _ := g.Admit(a(2)); !ok {
		t.Fatal("second refused")
	}
	if ok, reason := g.Admit(a(3)); ok || reason != ReasonPerIPCap {
		t.Fatalf("third address of one /64 = %v %q, want the cap", ok, reason)
	}
	g.Release(a(1))
	g.Release(a(2))
	if ok, _ := g.Admit(a(4)); !ok {
		t.Fatal("refused after releases")
	}
	g.Release(a(4))
	if ok, reason := g.Admit(a(5)); ok || reason != ReasonRate {
		t.Fatalf("fourth connection of one /64 within a second = %v %q, want the rate", ok, reason)
	}
	if g.Tracked() != 1 {
		t.Errorf("Tracked = %d, want 1 source", g.Tracked())
	}
}

// A spray of addresses within one /64 is one source: it cannot grow the table or push anyone out.
func TestGateSourcePrefixSprayIsOneEntry(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	o := banOptions(c, r)
	o.MaxConnsPerIP = 1 << 20
	o.MaxTracked = 64
	g := newGate(t, o)
	other := netip.MustParseAddr("2001:db8:ffff::1")
	if ok, _ := g.Admit(other); !ok {
		t.Fatal("first client refused")
	}
	for i := range 100_000 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 8: byte(i >> 16), 9: byte(i >> 8), 10: byte(i), 15: 1})
		if ok, _ := g.Admit(a); !ok {
			t.Fatalf("address %d of one /64 refused", i)
		}
	}
	if g.Tracked() != 2 {
		t.Errorf("Tracked = %d after 100 000 addresses of one /64, want 2", g.Tracked())
	}
	if conn, ban := g.EvictedPinned(); conn != 0 || ban != 0 {
		t.Errorf("EvictedPinned = %d, %d: the spray pushed a source out", conn, ban)
	}
}

// The allow list is matched against a client's own address, not its source: allowing one address does not
// allow its /64, and a neighbour's ban does not reach an allowed address.
func TestGateAllowListByAddress(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	o := banOptions(c, r)
	o.Allow = []netip.Prefix{netip.MustParsePrefix("2001:db8::1/128")}
	g := newGate(t, o)
	if _, banned := offend(g, c, netip.MustParseAddr("2001:db8::1"), 10); banned {
		t.Fatal("allowed address banned")
	}
	if _, banned := offend(g, c, netip.MustParseAddr("2001:db8::2"), 5); !banned {
		t.Fatal("its neighbour not banned")
	}
	if ok, _ := g.Admit(netip.MustParseAddr("2001:db8::1")); !ok {
		t.Error("allowed address refused by its neighbour's ban")
	}
	c.Advance(time.Second)
	if ok, _ := g.Admit(netip.MustParseAddr("2001:db8::3")); ok {
		t.Error("another address of the banned /64 admitted")
	}
}
