package limits

import (
	"net/netip"
	"slices"
	"testing"
)

// TopBans gives the first n of what sorting every ban would, and holds no more than n of them.
func TestTopBans(t *testing.T) {
	const sources = 1000
	g := newGate(t, GateOptions{OffencesBeforeBan: 1, MaxTracked: 4 * sources})
	for i := range sources {
		addr := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		for range 1 + i%3 { // counts 1..3: ties, broken by address
			g.Offence(addr, "", "too_large", 1)
			g.Unban(addr)
		}
		g.Offence(addr, "", "too_large", 1)
	}
	byCount := func(a, b Ban) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return b.Source.Addr().Compare(a.Source.Addr())
	}
	all := g.Bans()
	if len(all) != sources {
		t.Fatalf("%d bans, want %d", len(all), sources)
	}
	slices.SortFunc(all, byCount)
	for _, n := range []int{0, 1, 10, sources, 2 * sources} {
		top, active := g.TopBans(n, byCount)
		if active != sources {
			t.Errorf("TopBans(%d) active = %d, want %d", n, active, sources)
		}
		want := all[:min(n, sources)]
		if !slices.EqualFunc(top, want, func(a, b Ban) bool { return a.Source == b.Source && a.Count == b.Count }) {
			t.Errorf("TopBans(%d) differs from the first %d sorted bans", n, len(want))
		}
	}
	if allocs := testing.AllocsPerRun(10, func() { g.TopBans(10, byCount) }); allocs > 20 {
		t.Errorf("TopBans(10) of %d bans allocates %.0f times; want about 10", sources, allocs)
	}
}
