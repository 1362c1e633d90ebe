package limits

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recorder collects OnBan and OnUnban calls.
type recorder struct {
	mu           sync.Mutex
	bans, unbans []Ban
}

func (r *recorder) ban(b Ban) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bans = append(r.bans, b)
}

func (r *recorder) unban(b Ban) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unbans = append(r.unbans, b)
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bans), len(r.unbans)
}

var (
	addrA = netip.MustParseAddr("10.0.0.1")
	addrB = netip.MustParseAddr("10.0.0.2")
)

// banOptions is a gate that bans after 5 offences within 10s, for 1m doubling to 4m, forgetting after 1h.
func banOptions(c *fakeClock, r *recorder) GateOptions {
	return GateOptions{
		OffencesBeforeBan: 5,
		OffenceWindow:     10 * time.Second,
		BanMin:            time.Minute,
		BanMax:            4 * time.Minute,
		ForgetAfter:       time.Hour,
		Now:               c.Now,
		OnBan:             r.ban,
		OnUnban:           r.unban,
	}
}

// offend records n offences of weight 1 from addr, one second apart, and returns the ban of the last.
func offend(g *Gate, c *fakeClock, addr netip.Addr, n int) (Ban, bool) {
	var b Ban
	var banned bool
	for i := range n {
		if i > 0 {
			c.Advance(time.Second)
		}
		b, banned = g.Offence(addr, "client-1", "too_large", 1)
	}
	return b, banned
}

func TestGateOffencesBan(t *testing.T) {
	tests := []struct {
		name     string
		offences int
		gap      time.Duration // extra time before the last offence
		wantBan  bool
	}{
		{"five ban", 5, 0, true},
		{"four do not", 4, 0, false},
		{"last in the window", 5, 5 * time.Second, true}, // offences span 9s of a 10s window
		{"first left the window", 5, 6 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := newFakeClock(), &recorder{}
			g := newGate(t, banOptions(c, r))
			if _, banned := offend(g, c, addrA, tt.offences-1); banned {
				t.Fatal("banned before the last offence")
			}
			c.Advance(time.Second + tt.gap)
			_, banned := g.Offence(addrA, "", "too_large", 1)
			if banned != tt.wantBan {
				t.Fatalf("banned = %v, want %v", banned, tt.wantBan)
			}
			ok, reason := g.Admit(addrA)
			if ok == tt.wantBan || (tt.wantBan && reason != ReasonBanned) {
				t.Errorf("Admit = %v, %q", ok, reason)
			}
			if bans, _ := r.counts(); bans != map[bool]int{true: 1}[tt.wantBan] {
				t.Errorf("OnBan called %d times", bans)
			}
		})
	}
}

func TestGateWeights(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	g := newGate(t, banOptions(c, r))
	if _, banned := g.Offence(addrA, "", "x", 4.5); banned {
		t.Fatal("banned at 4.5")
	}
	for _, w := range []float64{0, -3} {
		if _, banned := g.Offence(addrA, "", "x", w); banned {
			t.Fatalf("weight %v counted", w)
		}
	}
	if _, banned := g.Offence(addrA, "", "x", 0.5); !banned {
		t.Fatal("not banned at 5")
	}
}

func TestGateOffencesOutsideWindowDoNotAccumulate(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	g := newGate(t, banOptions(c, r))
	for range 10 { // 20 offences over 100s, never 5 within 10s
		offend(g, c, addrA, 2)
		if _, banned := g.Offence(addrA, "", "x", 0); banned {
			t.Fatal("zero weight banned")
		}
		c.Advance(10 * time.Second)
	}
	if ok, reason := g.Admit(addrA); !ok {
		t.Fatalf("Admit = %v, %q after spread-out offences", ok, reason)
	}
	if n, _ := r.counts(); n != 0 {
		t.Fatalf("%d bans", n)
	}
}

func TestGateBanLifecycle(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	g := newGate(t, banOptions(c, r))
	b, banned := offend(g, c, addrA, 5)
	if !banned {
		t.Fatal("not banned")
	}
	start := c.Now()
	want := Ban{Source: netip.PrefixFrom(addrA, 32), ClientID: "client-1", Since: start, Until: start.Add(time.Minute), Count: 1, Reason: "too_large"}
	if b != want {
		t.Fatalf("ban = %+v, want %+v", b, want)
	}
	if got := g.Bans(); len(got) != 1 || got[0] != want {
		t.Fatalf("Bans() = %+v", got)
	}
	if g.ActiveBans() != 1 {
		t.Fatalf("ActiveBans = %d", g.ActiveBans())
	}
	// Offences during a ban neither extend it nor count toward the next, but
	// each reports the ban in force, so the caller ends the connection.
	if b, still := offend(g, c, addrA, 5); !still || b != want {
		t.Fatalf("offence while banned = %+v, %v; want the ban in force, true", b, still)
	}
	if bans, _ := r.counts(); bans != 1 {
		t.Fatalf("OnBan called %d times, want once", bans)
	}
	c.Advance(time.Minute - 5*time.Second) // one second before Until
	if ok, reason := g.Admit(addrA); ok || reason != ReasonBanned {
		t.Fatalf("Admit before expiry = %v, %q", ok, reason)
	}
	if ok, _ := g.Admit(addrB); !ok {
		t.Fatal("another address refused")
	}
	c.Advance(time.Second)
	if ok, reason := g.Admit(addrA); !ok {
		t.Fatalf("Admit at expiry = %v, %q", ok, reason)
	}
	if bans, unbans := r.counts(); bans != 1 || unbans != 1 {
		t.Fatalf("OnBan %d OnUnban %d, want 1 1", bans, unbans)
	}
	if r.unbans[0] != want {
		t.Errorf("unban = %+v, want %+v", r.unbans[0], want)
	}
	g.Sweep()
	if g.Unban(addrA) {
		t.Error("Unban of an ended ban reported true")
	}
	if bans, unbans := r.counts(); bans != 1 || unbans != 1 {
		t.Fatalf("after Sweep and Unban: OnBan %d OnUnban %d, want 1 1", bans, unbans)
	}
	if len(g.Bans()) != 0 || g.ActiveBans() != 0 {
		t.Fatalf("Bans %v ActiveBans %d after expiry", g.Bans(), g.ActiveBans())
	}
}

func TestGateBanDoubling(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	g := newGate(t, banOptions(c, r))
	for i, want := range []time.Duration{1, 2, 4, 4, 4} {
		b, banned := offend(g, c, addrA, 5)
		if !banned {
			t.Fatalf("ban %d not earned", i+1)
		}
		if got := b.Until.Sub(b.Since); got != want*time.Minute || b.Count != i+1 {
			t.Fatalf("ban %d lasts %v count %d, want %v count %d", i+1, got, b.Count, want*time.Minute, i+1)
		}
		c.Advance(b.Until.Sub(c.Now()))
	}
	g.Sweep() // notices the last expiry
	if bans, unbans := r.counts(); bans != 5 || unbans != 5 {
		t.Fatalf("OnBan %d OnUnban %d, want 5 5", bans, unbans)
	}
}

func TestGateForgetAfter(t *testing.T) {
	tests := []struct {
		name  string
		clean time.Duration
		sweep bool // Sweep drops a forgotten entry; without it the next offence must forget
		want  time.Duration
	}{
		{"short clean stretch doubles", time.Hour - time.Second, false, 2 * time.Minute},
		{"short clean stretch doubles after sweep", time.Hour - time.Second, true, 2 * time.Minute},
		{"full clean stretch forgets", time.Hour, false, time.Minute},
		{"full clean stretch forgets after sweep", time.Hour, true, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, r := newFakeClock(), &recorder{}
			g := newGate(t, banOptions(c, r))
			b, _ := offend(g, c, addrA, 5)
			c.Advance(b.Until.Sub(c.Now()) + tt.clean)
			if tt.sweep {
				g.Sweep()
			}
			b, banned := offend(g, c, addrA, 5)
			if !banned || b.Until.Sub(b.Since) != tt.want {
				t.Fatalf("second ban = %v for %v, want %v", banned, b.Until.Sub(b.Since), tt.want)
			}
		})
	}
}

// TestGateBanClearsOffences checks that a ban spends the offences that earned it: after a ban shorter than
// the window, one more offence does not ban again.
func TestGateBanClearsOffences(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	o := banOptions(c, r)
	o.OffenceWindow = time.Hour
	g := newGate(t, o)
	b, _ := offend(g, c, addrA, 5)
	c.Advance(b.Until.Sub(c.Now()))
	if _, banned := g.Offence(addrA, "", "x", 1); banned {
		t.Fatal("one offence after a ban banned again")
	}
	if _, banned := offend(g, c, addrA, 4); !banned {
		t.Fatal("five fresh offences did not ban")
	}
}

func TestGateUnban(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	g := newGate(t, banOptions(c, r))
	if g.Unban(addrA) {
		t.Fatal("Unban of an unknown address reported true")
	}
	offend(g, c, addrA, 5)
	c.Advance(10 * time.Second)
	if !g.Unban(addrA) {
		t.Fatal("Unban of a banned address reported false")
	}
	if ok, reason := g.Admit(addrA); !ok {
		t.Fatalf("Admit after Unban = %v, %q", ok, reason)
	}
	if g.Unban(addrA) {
		t.Fatal("second Unban reported true")
	}
	if _, unbans := r.counts(); unbans != 1 {
		t.Fatalf("OnUnban called %d times", unbans)
	}
	if got := r.unbans[0].Until; !got.Equal(c.Now()) {
		t.Errorf("unban Until = %v, want the time of Unban %v", got, c.Now())
	}
	// History is kept: the next ban doubles.
	b, banned := offend(g, c, addrA, 5)
	if !banned || b.Count != 2 || b.Until.Sub(b.Since) != 2*time.Minute {
		t.Fatalf("ban after Unban = %v, %+v", banned, b)
	}
}

func TestGateAllowList(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	o := banOptions(c, r)
	o.MaxConnsPerIP = 1
	o.RatePerSecond, o.RateBurst = 1, 1
	o.Allow = []netip.Prefix{
		netip.MustParsePrefix("192.168.1.77/24"), // not masked: still means the /24
		netip.MustParsePrefix("::ffff:172.16.0.0/108"),
		netip.MustParsePrefix("fd00::/8"),
	}
	g := newGate(t, o)
	for _, a := range []string{"192.168.1.5", "::ffff:192.168.1.6", "172.16.3.4", "fd00::1", "fd00::1%eth0"} {
		t.Run(a, func(t *testing.T) {
			addr := netip.MustParseAddr(a)
			for i := range 20 {
				if _, banned := g.Offence(addr, "x", "too_large", 1); banned {
					t.Fatal("allow-listed address banned")
				}
				if ok, reason := g.Admit(addr); !ok {
					t.Fatalf("Admit %d = %v, %q", i, ok, reason)
				}
			}
		})
	}
	if g.Tracked() != 0 {
		t.Errorf("Tracked = %d; allow-listed addresses are not tracked", g.Tracked())
	}
	// Just outside the prefix is judged.
	outside := netip.MustParseAddr("192.168.2.1")
	if _, banned := offend(g, c, outside, 5); !banned {
		t.Error("address outside the allow list not banned")
	}
}

func TestGateMappedAddressesAreOne(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	g := newGate(t, banOptions(c, r))
	offend(g, c, netip.MustParseAddr("::ffff:10.0.0.1"), 5)
	if ok, reason := g.Admit(addrA); ok || reason != ReasonBanned {
		t.Fatalf("Admit of the unmapped address = %v, %q", ok, reason)
	}
	if b := g.Bans(); len(b) != 1 || b[0].Source.Addr() != addrA {
		t.Fatalf("Bans = %+v, want one of %v", b, addrA)
	}
	v6 := netip.MustParseAddr("fe80::1")
	offend(g, c, v6.WithZone("eth0"), 5)
	if ok, _ := g.Admit(v6.WithZone("eth1")); ok {
		t.Fatal("a zone escaped the ban")
	}
}

func TestGatePerIPCap(t *testing.T) {
	c := newFakeClock()
	g := newGate(t, GateOptions{MaxConnsPerIP: 3, Now: c.Now})
	for i := range 3 {
		if ok, reason := g.Admit(addrA); !ok {
			t.Fatalf("Admit %d = %v, %q", i, ok, reason)
		}
	}
	if ok, reason := g.Admit(addrA); ok || reason != ReasonPerIPCap {
		t.Fatalf("Admit over the cap = %v, %q", ok, reason)
	}
	if ok, _ := g.Admit(netip.MustParseAddr("::ffff:10.0.0.1")); ok {
		t.Fatal("the mapped spelling escaped the cap")
	}
	if ok, _ := g.Admit(addrB); !ok {
		t.Fatal("another address refused")
	}
	g.Release(addrA)
	if ok, reason := g.Admit(addrA); !ok {
		t.Fatalf("Admit after Release = %v, %q", ok, reason)
	}
	if ok, _ := g.Admit(addrA); ok {
		t.Fatal("Release freed more than one")
	}
	// Releases beyond the admitted count do not open the cap further.
	for range 10 {
		g.Release(addrB)
	}
	for i := range 3 {
		if ok, _ := g.Admit(addrB); !ok {
			t.Fatalf("Admit %d of B after extra Releases refused", i)
		}
	}
	if ok, _ := g.Admit(addrB); ok {
		t.Fatal("extra Releases raised the cap")
	}
}

func TestGateRate(t *testing.T) {
	c := newFakeClock()
	g := newGate(t, GateOptions{RatePerSecond: 2, RateBurst: 4, Now: c.Now})
	admit := func() bool {
		ok, reason := g.Admit(addrA)
		if ok {
			g.Release(addrA)
		} else if reason != ReasonRate {
			t.Fatalf("refused with %q, want %q", reason, ReasonRate)
		}
		return ok
	}
	for i := range 4 {
		if !admit() {
			t.Fatalf("burst connection %d refused", i)
		}
	}
	if admit() {
		t.Fatal("admitted past the burst")
	}
	if ok, _ := g.Admit(addrB); !ok {
		t.Fatal("another address refused")
	}
	c.Advance(499 * time.Millisecond)
	if admit() {
		t.Fatal("admitted before a token refilled")
	}
	c.Advance(time.Millisecond)
	if !admit() {
		t.Fatal("refused after a token refilled")
	}
	if admit() {
		t.Fatal("one token admitted twice")
	}
	c.Advance(time.Hour) // refills to the burst, not beyond
	for i := range 4 {
		if !admit() {
			t.Fatalf("refilled burst connection %d refused", i)
		}
	}
	if admit() {
		t.Fatal("bucket refilled beyond the burst")
	}
}

func TestGateCapRefusalTakesNoToken(t *testing.T) {
	c := newFakeClock()
	g := newGate(t, GateOptions{MaxConnsPerIP: 1, RatePerSecond: 1, RateBurst: 2, Now: c.Now})
	if ok, _ := g.Admit(addrA); !ok {
		t.Fatal("first refused")
	}
	for range 5 {
		if ok, reason := g.Admit(addrA); ok || reason != ReasonPerIPCap {
			t.Fatalf("Admit over cap = %v, %q", ok, reason)
		}
	}
	g.Release(addrA)
	if ok, reason := g.Admit(addrA); !ok {
		t.Fatalf("second token was taken by refused attempts: %q", reason)
	}
}

func TestGateBounded(t *testing.T) {
	const maxTracked = 10_000
	c, r := newFakeClock(), &recorder{}
	o := banOptions(c, r)
	o.MaxTracked = maxTracked
	o.MaxConnsPerIP = 10
	g := newGate(t, o)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	pad := strings.Repeat("x", 300) // ids past maxStoredClientID bytes are clipped, so the distinct part goes first
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.Offence(a, strconv.Itoa(i)+pad, "too_large", 1)
		if i%2 == 0 {
			if ok, _ := g.Admit(a); ok {
				g.Release(a)
			}
		}
		if g.Tracked() > maxTracked {
			t.Fatalf("Tracked = %d after %d addresses", g.Tracked(), i+1)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// About 450 bytes a source when full; untracked, 100 000 of them would be 45 MB.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Errorf("heap grew by %d bytes tracking at most %d sources", grew, maxTracked)
	}
	// The last addresses are the ones remembered.
	last := netip.AddrFrom4([4]byte{10, 1, 0x86, 0x9f}) // 99 999
	for range 4 {
		g.Offence(last, "", "too_large", 1)
	}
	// Its ban carries the client id it offended with, clipped.
	if bans := g.Bans(); len(bans) != 1 || bans[0].ClientID != ("99999" + pad)[:maxStoredClientID] {
		t.Errorf("bans = %+v, want the last address's with its client id clipped to %d bytes", bans, maxStoredClientID)
	}
	if g.Tracked() != maxTracked {
		t.Errorf("Tracked = %d, want full at %d", g.Tracked(), maxTracked)
	}
	if n, _ := r.counts(); n != 1 {
		t.Errorf("%d bans, want the last address's", n)
	}
	// Once everything has aged out, Sweep gives the memory back.
	c.Advance(time.Hour)
	g.Sweep()
	if g.Tracked() != 1 {
		t.Errorf("after Sweep: Tracked = %d, want only the one with a ban history", g.Tracked())
	}
}

// TestGateFullTableAdmitsNewcomers fills a small table with connected and banned sources, as an attacker
// with many prefixes can, and checks that a newcomer is still admitted: idle and expired entries go first,
// then the least recently seen connected source, and only then the least recently seen ban, never one
// that keeps knocking.
func TestGateFullTableAdmitsNewcomers(t *testing.T) {
	const maxTracked = 64 // one shard
	c, r := newFakeClock(), &recorder{}
	o := banOptions(c, r)
	o.MaxTracked = maxTracked
	o.MaxConnsPerIP = 1
	g := newGate(t, o)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}) }
	for i := range maxTracked {
		c.Advance(time.Millisecond) // a distinct last-seen time each
		if i%2 == 0 {
			if ok, _ := g.Admit(addr(i)); !ok {
				t.Fatalf("Admit %d refused", i)
			}
		} else {
			for range 5 {
				g.Offence(addr(i), "", "too_large", 1)
			}
		}
	}
	if g.ActiveBans() != maxTracked/2 {
		t.Fatalf("ActiveBans = %d", g.ActiveBans())
	}
	// Connected sources go before bans, least recently seen first.
	for i := range maxTracked / 2 {
		newcomer := addr(1000 + i)
		if ok, reason := g.Admit(newcomer); !ok {
			t.Fatalf("newcomer %d with a full table refused: %q", i, reason)
		}
		if g.Tracked() > maxTracked {
			t.Fatalf("Tracked = %d", g.Tracked())
		}
	}
	if conn, ban := g.EvictedPinned(); conn != maxTracked/2 || ban != 0 {
		t.Fatalf("EvictedPinned = %d connected, %d banned; want %d, 0", conn, ban, maxTracked/2)
	}
	// Release of a forgotten connection is harmless.
	g.Release(addr(0))
	if g.ActiveBans() != maxTracked/2 {
		t.Fatalf("ActiveBans = %d after making room from connected sources", g.ActiveBans())
	}
	// Now the newcomers earn bans too: the table is all bans. Source 63 keeps knocking.
	for i := range maxTracked / 2 {
		c.Advance(time.Millisecond)
		g.Release(addr(1000 + i))
		for range 5 {
			g.Offence(addr(1000+i), "", "too_large", 1)
		}
	}
	if g.ActiveBans() != maxTracked {
		t.Fatalf("ActiveBans = %d, want the whole table", g.ActiveBans())
	}
	if ok, reason := g.Admit(addr(63)); ok || reason != ReasonBanned {
		t.Fatalf("banned source 63 admitted: %q", reason)
	}
	if ok, reason := g.Admit(addr(2000)); !ok {
		t.Fatalf("newcomer with a table full of bans refused: %q", reason)
	}
	if _, ban := g.EvictedPinned(); ban != 1 {
		t.Fatalf("%d bans forgotten, want 1", ban)
	}
	if _, unbans := r.counts(); unbans != 1 {
		t.Fatalf("OnUnban %d times, want once for the ban forgotten", unbans)
	}
	// The ban forgotten is the least recently seen one (source 1), not source 63, which knocked.
	if ok, _ := g.Admit(addr(63)); ok {
		t.Fatal("the ban of a source that kept knocking was forgotten")
	}
	if ok, reason := g.Admit(addr(1)); !ok {
		t.Fatalf("source 1 still refused (%q): its ban was the least recently seen", reason)
	}
	// An expired ban makes room, even before Sweep notices it, ahead of a connected source.
	c.Advance(time.Minute)
	connBefore, _ := g.EvictedPinned()
	if ok, reason := g.Admit(addr(3000)); !ok {
		t.Fatalf("Admit after bans expired = %v, %q", ok, reason)
	}
	if conn, _ := g.EvictedPinned(); conn != connBefore {
		t.Fatal("a connected source was forgotten while an expired ban could make room")
	}
	g.Sweep()
	if g.Tracked() > maxTracked {
		t.Fatalf("Tracked = %d", g.Tracked())
	}
}

func TestGateZeroAddr(t *testing.T) {
	c := newFakeClock()
	g := newGate(t, GateOptions{MaxConnsPerIP: 1, OffencesBeforeBan: 1, Now: c.Now})
	var zero netip.Addr // a listener that is not IP reports no address; all such share one entry
	if ok, _ := g.Admit(zero); !ok {
		t.Fatal("first refused")
	}
	if ok, _ := g.Admit(zero); ok {
		t.Fatal("cap not applied to the zero address")
	}
	g.Release(zero)
	if _, banned := g.Offence(zero, "", "x", 1); !banned {
		t.Fatal("zero address not banned")
	}
}

func TestGateNoCapNoTracking(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	g := newGate(t, banOptions(c, r))
	for i := range 100 {
		a := netip.AddrFrom4([4]byte{10, 0, 1, byte(i)})
		if ok, _ := g.Admit(a); !ok {
			t.Fatal("refused with no cap, rate or ban")
		}
		g.Release(a)
	}
	if g.Tracked() != 0 {
		t.Fatalf("Tracked = %d; with no cap or rate only offenders are tracked", g.Tracked())
	}
	offend(g, c, addrA, 5)
	if ok, reason := g.Admit(addrA); ok || reason != ReasonBanned {
		t.Fatalf("banned address admitted without tracking: %v %q", ok, reason)
	}
}

func TestGateBansDisabled(t *testing.T) {
	c := newFakeClock()
	g := newGate(t, GateOptions{Now: c.Now})
	for range 100 {
		if _, banned := g.Offence(addrA, "cid", "x", 1); banned {
			t.Fatal("banned with OffencesBeforeBan = 0")
		}
	}
	if g.Tracked() != 0 {
		t.Errorf("Tracked = %d with bans disabled", g.Tracked())
	}
}

// Bans run from BanMin to BanMax as given (NewGate refuses zero or BanMax below BanMin, see
// TestNewGateRejectsInvalidOptions); only past longestBan are they cut, so the arithmetic cannot overflow.
func TestGateBanRange(t *testing.T) {
	tests := []struct {
		name           string
		min, max       time.Duration
		wantMin, wantM time.Duration
	}{
		{"as given", time.Minute, time.Hour, time.Minute, time.Hour},
		{"max = min", 2 * time.Hour, 2 * time.Hour, 2 * time.Hour, 2 * time.Hour},
		{"huge", 1 << 62, 1<<63 - 1, longestBan, longestBan},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGate(t, GateOptions{BanMin: tt.min, BanMax: tt.max})
			if time.Duration(g.banFor(1)) != tt.wantMin || time.Duration(g.banFor(1000)) != tt.wantM {
				t.Errorf("bans %v .. %v, want %v .. %v",
					time.Duration(g.banFor(1)), time.Duration(g.banFor(1000)), tt.wantMin, tt.wantM)
			}
		})
	}
}

// TestGateConcurrent runs Admit, Release, Offence, Unban and Sweep from many goroutines over a few
// addresses and checks that the per-IP cap is never exceeded and every ban is reported ended exactly once.
func TestGateConcurrent(t *testing.T) {
	const (
		workers = 32
		rounds  = 500
		addrs   = 8
		capConn = 3
	)
	var bans, unbans atomic.Int64
	g := newGate(t, GateOptions{
		OffencesBeforeBan: 20,
		OffenceWindow:     time.Second,
		BanMin:            time.Millisecond,
		BanMax:            4 * time.Millisecond,
		MaxConnsPerIP:     capConn,
		MaxTracked:        64,
		OnBan:             func(Ban) { bans.Add(1) },
		OnUnban:           func(Ban) { unbans.Add(1) },
	})
	var open [addrs]atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				i := rng.IntN(addrs)
				a := netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)})
				switch rng.IntN(10) {
				case 0:
					g.Offence(a, "c", "too_large", 1)
				case 1:
					g.Unban(a)
				case 2:
					g.Sweep()
					_ = g.Bans()
				default:
					if ok, _ := g.Admit(a); ok {
						if n := open[i].Add(1); n > capConn {
							errs <- fmt.Errorf("%d connections open from %v, cap %d", n, a, capConn)
						}
						runtime.Gosched()
						open[i].Add(-1)
						g.Release(a)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Let every ban expire (BanMax is 4ms), then Sweep reports the rest.
	waitFor(t, "bans to expire", func() bool { return g.ActiveBans() == 0 })
	g.Sweep()
	if bans.Load() != unbans.Load() {
		t.Fatalf("%d bans, %d ends", bans.Load(), unbans.Load())
	}
	for i := range addrs {
		a := netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)})
		for j := range capConn {
			if ok, reason := g.Admit(a); !ok {
				t.Fatalf("Admit %d of %v after the run = %v, %q: a connection count leaked", j, a, ok, reason)
			}
		}
	}
}

func BenchmarkGateAdmitRelease(b *testing.B) {
	g := newGate(b, GateOptions{OffencesBeforeBan: 5, MaxConnsPerIP: 100, RatePerSecond: 1e12, RateBurst: 1 << 30})
	a := netip.MustParseAddr("10.1.2.3")
	g.Admit(a)
	g.Release(a)
	b.ReportAllocs()
	for b.Loop() {
		if ok, reason := g.Admit(a); !ok {
			b.Fatal(reason)
		}
		g.Release(a)
	}
}

func BenchmarkGateAdmitReleaseParallel(b *testing.B) {
	g := newGate(b, GateOptions{OffencesBeforeBan: 5, MaxConnsPerIP: 1 << 20})
	var next atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		n := next.Add(1)
		a := netip.AddrFrom4([4]byte{10, 2, byte(n >> 8), byte(n)})
		for pb.Next() {
			if ok, reason := g.Admit(a); !ok {
				b.Error(reason)
				return
			}
			g.Release(a)
		}
	})
}

func BenchmarkGateAdmitBanned(b *testing.B) {
	g := newGate(b, GateOptions{OffencesBeforeBan: 1, BanMin: time.Hour, MaxConnsPerIP: 100})
	a := netip.MustParseAddr("10.1.2.3")
	if _, banned := g.Offence(a, "", "too_large", 1); !banned {
		b.Fatal("not banned")
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := g.Admit(a); ok {
			b.Fatal("admitted")
		}
	}
}

func BenchmarkGateOffence(b *testing.B) {
	g := newGate(b, GateOptions{OffencesBeforeBan: 1e9, MaxTracked: 10_000})
	addrs := make([]netip.Addr, 50_000)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		g.Offence(addrs[i%len(addrs)], "", "too_large", 1)
		i++
	}
}

// A ban names the principal of the offence that earned it, clipped like the client id; an offence from a
// connection that had not logged in clears it, so a ban never names a user who did not commit it.
func TestBanNamesThePrincipal(t *testing.T) {
	g := newGate(t, GateOptions{OffencesBeforeBan: 2, MaxTracked: 16})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	long := strings.Repeat("u", 300)
	for _, tc := range []struct {
		addr netip.Addr
		who  []Offender
		want string
	}{
		{a, []Offender{{ClientID: "c", Principal: "alice"}, {Principal: long}}, long[:maxStoredClientID]},
		{b, []Offender{{Principal: "alice"}, {ClientID: "anon"}}, ""},
	} {
		var ban Ban
		var banned bool
		for _, w := range tc.who {
			ban, banned = g.OffenceBy(tc.addr, w, "too_large", 1)
		}
		if !banned || ban.Principal != tc.want {
			t.Errorf("%v: banned %v, principal %q, want %q", tc.addr, banned, ban.Principal, tc.want)
		}
	}
}
