package limits

import (
	"net/netip"
	"sync"
)

// entry is what the gate knows of one source: an address prefix (see GateOptions.IPv4Prefix). Times are
// nanoseconds since the gate's epoch.
type entry struct {
	links[entry]                     // in list, its shard's list for its state
	list         *lru[entry, *entry] // the list e is in: idle, busy or bans; nil while being made

	src      netip.Prefix // masked
	clientID string       // last client id seen offending, clipped
	reason   string       // last offence reason
	offences window

	principal string // principal of the last offence, clipped; "" when it had none

	tokens   float64 // token bucket of new connections
	tokensAt int64   // when tokens was last brought up to date
	since    int64   // ban start
	until    int64   // ban end
	dirtyAt  int64   // last offence or ban end: the clean stretch that forgets the history starts here
	lastSeen int64   // last use, the order of every list
	bans     int     // bans in the remembered history
	conns    int32   // connections admitted and not released
	banned   bool    // a ban is recorded; it is in force while the clock is before until
}

func (e *entry) link() *links[entry] { return &e.links }

// pinned reports whether forgetting e would lose something: a connection count or a ban.
func (e *entry) pinned() bool { return e.conns > 0 || e.banned }

// shard is one lock's worth of the source table. Every entry is in exactly one of three lists by state,
// each least recently seen at the back, so making room takes the back of the cheapest list to lose.
type shard struct {
	mu   sync.Mutex
	m    map[netip.Prefix]*entry
	idle lru[entry, *entry] // neither connected nor banned: forgetting one loses only history
	busy lru[entry, *entry] // connected, not banned: forgetting one loosens its cap by its open connections
	bans lru[entry, *entry] // banned (in force or expired unnoticed), so Bans and Sweep need not walk the table
	_    [64]byte           // keep neighbouring shards' locks off one cache line
}

// listFor returns the list e belongs in now.
func (s *shard) listFor(e *entry) *lru[entry, *entry] {
	switch {
	case e.banned:
		return &s.bans
	case e.conns > 0:
		return &s.busy
	}
	return &s.idle
}

// touch marks e seen now and moves it to the front of the list it belongs in. Every change of e.conns or
// e.banned is followed by a touch. The caller holds s.mu.
func (s *shard) touch(e *entry, now int64) {
	e.lastSeen = now
	want := s.listFor(e)
	if e.list == want {
		want.moveToFront(e)
		return
	}
	s.unlink(e)
	want.pushFront(e)
	e.list = want
}

// unlink takes e out of its list. The caller holds s.mu.
func (s *shard) unlink(e *entry) {
	if e.list != nil {
		e.list.remove(e)
		e.list = nil
	}
}

// lockEntry locks the shard of addr's source (addr normalized) and returns it with the source's entry,
// inserting one (see insert) when the source has none; a ban the insert ends is reported through n. The
// caller unlocks s.mu, then notifies n, so OnBan and OnUnban never run under a shard lock.
func (g *Gate) lockEntry(addr netip.Addr, now int64, n *note) (*shard, *entry) {
	src := g.source(addr)
	s := g.shard(src)
	s.mu.Lock()
	e := s.m[src]
	if e == nil {
		e = g.insert(s, src, now, n)
	}
	return s, e
}

// insert adds a new entry for src. When the shard is full it makes room by forgetting, in this order, the
// least recently seen idle entry, an entry whose ban has expired unnoticed, the least recently seen
// connected one, or the least recently seen ban in force. A full table must not refuse every newcomer:
// an attacker with many prefixes (a single IPv6 /48 holds 65 536 /64s) can hold that many connections or
// earn that many bans, and new clients from elsewhere must still get in. A ban that keeps being tested
// is seen each time, so the ban forgotten is one nobody is knocking on. A ban it ends is reported through
// n. The caller holds s.mu.
func (g *Gate) insert(s *shard, src netip.Prefix, now int64, n *note) *entry {
	var e *entry
	if len(s.m) >= g.perShard {
		expired := (*entry)(nil)
		if s.idle.back == nil {
			expired = expiredBan(s, now)
		}
		switch {
		case s.idle.back != nil:
			e = s.idle.back
		case expired != nil:
			e = expired
			n.unban, n.hasUnban = g.endBan(e, e.until), true
		case s.busy.back != nil:
			e = s.busy.back
			g.evictedConnected.Add(1)
		default:
			e = s.bans.back // the shard is full and nothing else is in it, so this is not nil
			n.unban, n.hasUnban = g.endBan(e, now), true
			g.evictedBanned.Add(1)
		}
		s.unlink(e)
		delete(s.m, e.src)
		*e = entry{} // reuse the memory: a flood of new sources then allocates nothing
	} else {
		e = new(entry)
		g.tracked.Add(1)
	}
	e.src = src
	e.tokens = g.t().burst
	e.tokensAt = now
	e.offences.last = g.slot(now)
	s.m[src] = e
	s.touch(e, now)
	return e
}

// expiredScan bounds how many of the least recently seen bans insert checks for one that has expired: a
// shard full of bans in force must not cost a walk of all of them per new source. Sweep ends the rest.
const expiredScan = 16

// expiredBan returns one of the least recently seen entries whose ban has expired, or nil. The caller
// holds s.mu.
func expiredBan(s *shard, now int64) *entry {
	e := s.bans.back
	for i := 0; e != nil && i < expiredScan; i++ {
		if now >= e.until {
			return e
		}
		e = s.bans.prev(e)
	}
	return nil
}

// endBan ends e's ban at end and returns it for OnUnban. The history stays. The caller holds s.mu and
// touches or forgets e afterwards.
func (g *Gate) endBan(e *entry, end int64) Ban {
	b := g.banOf(e)
	b.Until = g.at(end)
	e.banned = false
	e.dirtyAt = end
	return b
}

func (g *Gate) banOf(e *entry) Ban {
	return Ban{
		Source:   e.src,
		ClientID: e.clientID,
		Since:    g.at(e.since),
		Until:    g.at(e.until),
		Count:    e.bans,
		Reason:   e.reason,

		Principal: e.principal,
	}
}

// forgettable reports whether dropping e loses nothing: a new entry for the same source would judge it
// the same way.
func (g *Gate) forgettable(e *entry, now int64) bool {
	if e.pinned() || e.offences.scoreAt(g.slot(now)) > 0 {
		return false
	}
	t := g.t()
	if t.rate > 0 && e.tokens+float64(now-e.tokensAt)*t.rate < t.burst {
		return false
	}
	return e.bans == 0 || now-e.dirtyAt >= t.forget
}
