package limits

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
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

// ErrAllowed is returned by AddBan for an address on the allow list, which bans never reach.
var ErrAllowed = errors.New("address is on the allow list")

// AddBan bans addr's source for d from now, with reason, as an operator does in an incident (POST
// /bans). It counts as one more ban in the source's history, so an offence-earned ban after it doubles
// from there; a ban already in force that ends later is kept, with its end. OnBan runs for it. d is
// capped at about 146 years; it must be positive.
func (g *Gate) AddBan(addr netip.Addr, d time.Duration, reason string) (Ban, error) {
	addr = normalize(addr)
	if d <= 0 {
		return Ban{}, fmt.Errorf("ban length %v must be positive: %w", d, ErrInvalidOptions)
	}
	if g.allowed(addr) {
		return Ban{}, ErrAllowed
	}
	now := g.now()
	var n note
	defer g.notify(&n) // runs after the unlock below
	s, e := g.lockEntry(addr, now, &n)
	defer s.mu.Unlock()
	defer s.touch(e, now)
	until := now + int64(min(d, longestBan))
	if e.banned && now < e.until && e.until >= until {
		return g.banOf(e), nil
	}
	if !e.banned || now >= e.until {
		e.bans++
		e.since = now
	}
	e.banned = true
	e.until = until
	e.dirtyAt = until
	e.offences.reset()
	if reason != e.reason {
		e.reason = strings.Clone(reason)
	}
	n.ban, n.hasBan = g.banOf(e), true
	return n.ban, nil
}
