package limits

import (
	"net/netip"
	"sync"
)

// entry is what the gate knows of one source address. Times are nanoseconds since the gate's epoch.
type entry struct {
	links[entry] // in its shard's idle list when neither connected nor banned

	addr     netip.Addr
	clientID string // last client id seen offending, clipped
	reason   string // last offence reason
	offences window

	tokens   float64 // token bucket of new connections
	tokensAt int64   // when tokens was last brought up to date
	since    int64   // ban start
	until    int64   // ban end
	dirtyAt  int64   // last offence or ban end: the clean stretch that forgets the history starts here
	lastSeen int64   // last use, the order of the idle list
	bans     int     // bans in the remembered history
	conns    int32   // connections admitted and not released
	banned   bool    // a ban is recorded; it is in force while the clock is before until
}

func (e *entry) link() *links[entry] { return &e.links }

// pinned reports whether e must stay tracked: forgetting it would lose a connection count or a ban.
func (e *entry) pinned() bool { return e.conns > 0 || e.banned }

// shard is one lock's worth of the address table.
type shard struct {
	mu   sync.Mutex
	m    map[netip.Addr]*entry
	idle lru[entry, *entry]  // unpinned entries, least recently used at the back
	bans map[*entry]struct{} // entries with banned set, so Bans and Sweep need not walk the table
	_    [64]byte            // keep neighbouring shards' locks off one cache line
}

// touch marks e used now and moves it to where it belongs: the front of the idle list when unpinned, out of
// it when pinned. Every change of e.conns or e.banned is followed by a touch. The caller holds s.mu.
func (s *shard) touch(e *entry, now int64) {
	e.lastSeen = now
	in := s.idle.in(e)
	switch {
	case e.pinned() && in:
		s.idle.remove(e)
	case !e.pinned() && in:
		s.idle.moveToFront(e)
	case !e.pinned() && !in:
		s.idle.pushFront(e)
	}
}

// insert adds a new entry for addr, making room when the shard is full by forgetting its least recently
// used idle entry, or failing that an entry whose ban has expired unnoticed. It returns nil when every
// entry is pinned. A ban it ends is reported through n. The caller holds s.mu.
func (g *Gate) insert(s *shard, addr netip.Addr, now int64, n *note) *entry {
	var e *entry
	if len(s.m) >= g.perShard {
		e = s.idle.back
		if e == nil {
			for b := range s.bans {
				if now >= b.until && b.conns == 0 {
					n.unban, n.hasUnban = g.endBan(s, b, b.until), true
					e = b
					break
				}
			}
			if e == nil {
				return nil
			}
		} else {
			s.idle.remove(e)
		}
		delete(s.m, e.addr)
		*e = entry{} // reuse the memory: a flood of new sources then allocates nothing
	} else {
		e = new(entry)
		g.tracked.Add(1)
	}
	e.addr = addr
	e.tokens = g.burst
	e.tokensAt = now
	e.offences.last = g.slot(now)
	e.lastSeen = now
	s.m[addr] = e
	s.idle.pushFront(e)
	return e
}

// endBan ends e's ban at end and returns it for OnUnban. The history stays. The caller holds s.mu and
// touches e afterwards.
func (g *Gate) endBan(s *shard, e *entry, end int64) Ban {
	b := g.banOf(e)
	b.Until = g.at(end)
	e.banned = false
	e.dirtyAt = end
	delete(s.bans, e)
	return b
}

func (g *Gate) banOf(e *entry) Ban {
	return Ban{
		Addr:     e.addr,
		ClientID: e.clientID,
		Since:    g.at(e.since),
		Until:    g.at(e.until),
		Count:    e.bans,
		Reason:   e.reason,
	}
}

// forgettable reports whether dropping e loses nothing: a new entry for the same address would judge it
// the same way.
func (g *Gate) forgettable(e *entry, now int64) bool {
	if e.pinned() || e.offences.scoreAt(g.slot(now)) > 0 {
		return false
	}
	if g.rate > 0 && e.tokens+float64(now-e.tokensAt)*g.rate < g.burst {
		return false
	}
	return e.bans == 0 || now-e.dirtyAt >= g.forget
}
