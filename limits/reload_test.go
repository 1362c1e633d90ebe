package limits

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// A reload changes the gate's settings and keeps its memory: the ban in force stays, the ban history
// keeps doubling (from the new BanMin), a new cap applies to the next connection, and a newly allowed
// address is let through at once.
func TestGateSetOptionsKeepsBans(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	g := newGate(t, banOptions(c, r))
	if _, banned := offend(g, c, addrA, 5); !banned {
		t.Fatal("first ban not earned")
	}
	o := withDefaults(banOptions(c, r))
	o.BanMin, o.BanMax = 2*time.Minute, 16*time.Minute
	o.MaxConnsPerIP = 1
	o.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.9/32")}
	if err := g.SetOptions(o); err != nil {
		t.Fatal(err)
	}
	if ok, reason := g.Admit(addrA); ok || reason != ReasonBanned {
		t.Fatalf("banned source after SetOptions: Admit = %v %q, want refused as banned", ok, reason)
	}
	if len(g.Bans()) != 1 {
		t.Fatalf("bans after SetOptions: %v, want the one in force", g.Bans())
	}
	if ok, _ := g.Admit(addrB); !ok {
		t.Fatal("first connection of B refused")
	}
	if ok, reason := g.Admit(addrB); ok || reason != ReasonPerIPCap {
		t.Fatalf("second connection of B under the new cap of 1: %v %q, want per_ip_cap", ok, reason)
	}
	allowed := netip.MustParseAddr("10.0.0.9")
	for range 3 {
		if ok, _ := g.Admit(allowed); !ok {
			t.Fatal("newly allowed address refused")
		}
	}
	c.Advance(time.Minute) // the first ban (1m, under the old options) ends
	b, banned := offend(g, c, addrA, 5)
	if !banned || b.Count != 2 || b.Until.Sub(b.Since) != 4*time.Minute {
		t.Fatalf("second ban: banned %v count %d for %v, want count 2 for 4m (new ban_min 2m doubled)",
			banned, b.Count, b.Until.Sub(b.Since))
	}
	if got := g.Options().BanMin; got != 2*time.Minute {
		t.Fatalf("Options().BanMin = %v after SetOptions, want 2m", got)
	}
}

// What the source table is keyed or sized by cannot change live; the gate keeps running as it was.
func TestGateSetOptionsRefusesTableShape(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*GateOptions)
	}{
		{"ipv4 prefix", func(o *GateOptions) { o.IPv4Prefix = 24 }},
		{"ipv6 prefix", func(o *GateOptions) { o.IPv6Prefix = 48 }},
		{"max tracked", func(o *GateOptions) { o.MaxTracked = 7 }},
		{"invalid", func(o *GateOptions) { o.BanMin = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := newFakeClock(), &recorder{}
			g := newGate(t, banOptions(c, r))
			o := g.Options()
			tc.mutate(&o)
			o.OffencesBeforeBan = 1
			if err := g.SetOptions(o); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("SetOptions = %v, want ErrInvalidOptions", err)
			}
			if _, banned := g.Offence(addrA, "", "too_large", 1); banned {
				t.Fatal("a refused SetOptions changed the threshold")
			}
		})
	}
}

// An operator's ban refuses the source, shows its reason, counts in the history, and never reaches an
// allowed address.
func TestGateAddBan(t *testing.T) {
	c, r := newFakeClock(), &recorder{}
	o := banOptions(c, r)
	o.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.9/32")}
	g := newGate(t, o)
	b, err := g.AddBan(addrA, 10*time.Minute, "incident 42")
	if err != nil {
		t.Fatal(err)
	}
	if b.Reason != "incident 42" || b.Count != 1 || b.Until.Sub(b.Since) != 10*time.Minute {
		t.Fatalf("AddBan = %+v", b)
	}
	if ok, reason := g.Admit(addrA); ok || reason != ReasonBanned {
		t.Fatalf("Admit after AddBan = %v %q", ok, reason)
	}
	if bans := g.Bans(); len(bans) != 1 || bans[0].Reason != "incident 42" {
		t.Fatalf("Bans = %+v", bans)
	}
	if bans, _ := r.counts(); bans != 1 {
		t.Fatalf("OnBan ran %d times, want 1", bans)
	}
	if _, err := g.AddBan(netip.MustParseAddr("10.0.0.9"), time.Minute, "x"); !errors.Is(err, ErrAllowed) {
		t.Fatalf("AddBan of an allowed address = %v, want ErrAllowed", err)
	}
	if _, err := g.AddBan(addrB, 0, "x"); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("AddBan for 0s = %v, want ErrInvalidOptions", err)
	}
	c.Advance(10 * time.Minute)
	b, banned := offend(g, c, addrA, 5)
	if !banned || b.Count != 2 || b.Until.Sub(b.Since) != 2*time.Minute {
		t.Fatalf("earned ban after the manual one: %+v, want count 2 lasting 2m", b)
	}
}
