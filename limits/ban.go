package limits

import (
	"cmp"
	"net/netip"
	"slices"
)

// banFor returns the length of a source's count-th ban: BanMin doubled count-1 times, at most BanMax.
func (g *Gate) banFor(count int) int64 {
	t := g.t()
	d := t.banMin
	for i := 1; i < count && d < t.banMax; i++ {
		if d > t.banMax/2 {
			return t.banMax
		}
		d *= 2
	}
	return min(d, t.banMax)
}

// Unban lifts the ban of addr's source (see Source) now and reports whether one was in force. The history
// is kept, so a repeat offender's next ban still doubles.
func (g *Gate) Unban(addr netip.Addr) bool {
	now := g.now()
	src := g.Source(addr)
	s := g.shard(src)
	var n note
	defer g.notify(&n)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[src]
	if e == nil || !e.banned {
		return false
	}
	lifted := now < e.until
	n.unban, n.hasUnban = g.endBan(e, min(now, e.until)), true
	s.touch(e, now)
	return lifted
}

// Bans returns the bans in force, sorted by Until.
func (g *Gate) Bans() []Ban {
	now := g.now()
	var out []Ban
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		for e := s.bans.back; e != nil; e = s.bans.prev(e) {
			if now < e.until {
				out = append(out, g.banOf(e))
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Ban) int {
		return cmp.Or(a.Until.Compare(b.Until), a.Source.Addr().Compare(b.Source.Addr()), a.Source.Bits()-b.Source.Bits())
	})
	return out
}

// ActiveBans returns how many bans are in force (for a gauge).
func (g *Gate) ActiveBans() int {
	now := g.now()
	count := 0
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		for e := s.bans.back; e != nil; e = s.bans.prev(e) {
			if now < e.until {
				count++
			}
		}
		s.mu.Unlock()
	}
	return count
}

// Sweep ends expired bans (calling OnUnban for each) and forgets entries that carry nothing worth keeping:
// no connection, no ban, no offence in the window, a full token bucket and no ban history younger than
// ForgetAfter. The proxy calls it every few seconds; it is what releases memory after an attack.
func (g *Gate) Sweep() {
	now := g.now()
	refill := g.t().refill
	var ended []Ban
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		for e := s.bans.back; e != nil; {
			prev := s.bans.prev(e) // touch moves e to another list
			if now >= e.until {
				ended = append(ended, g.endBan(e, e.until))
				s.touch(e, now)
			}
			e = prev
		}
		// The idle list is in order of last use, so past the first entry used within refill nothing
		// further is forgettable; before it, entries may still hold history and are skipped.
		for e := s.idle.back; e != nil && now-e.lastSeen >= refill; {
			prev := s.idle.prev(e)
			if g.forgettable(e, now) {
				s.unlink(e)
				delete(s.m, e.src)
				g.tracked.Add(-1)
			}
			e = prev
		}
		s.mu.Unlock()
		if g.onUnban != nil {
			for _, b := range ended {
				g.onUnban(b)
			}
		}
		ended = ended[:0]
	}
}
