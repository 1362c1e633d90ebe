package limits

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a connection is refused by Gate.Admit.
const (
	ReasonBanned   Reason = "banned"
	ReasonPerIPCap Reason = "per_ip_cap"
	ReasonRate     Reason = "rate"
)

// longestBan keeps ban arithmetic in int64 nanoseconds far from overflow (about 146 years).
const longestBan = time.Duration(1 << 62)

// GateOptions configures NewGate, which takes every value as given and refuses one out of range with an
// error naming the field (ErrInvalidOptions); it fills in nothing. The defaults live in config.Default.
// Where zero means "off" the field says so.
type GateOptions struct {
	// OffencesBeforeBan is the weighted sum of offences within OffenceWindow that earns a ban. Zero disables
	// bans, and offences are then not tracked at all. Finite, >= 0.
	OffencesBeforeBan float64
	// OffenceWindow is the sliding window offences are summed over. Must be positive.
	OffenceWindow time.Duration
	// BanMin is the first ban of a source. Must be positive.
	BanMin time.Duration
	// BanMax caps a ban: each further ban of the same source doubles, up to it. At least BanMin. Bans
	// longer than about 146 years (1<<62 ns) last that long, which keeps the arithmetic from overflowing.
	BanMax time.Duration
	// ForgetAfter is the clean stretch (no offence, no ban) after which a source's ban history is forgotten,
	// so its next ban is BanMin again. Must be positive.
	ForgetAfter time.Duration
	// MaxConnsPerIP caps a source's concurrent connections; zero means no cap. Must not be negative.
	MaxConnsPerIP int
	// RatePerSecond is the refill of a source's token bucket of new connections; zero means no rate limit.
	// Finite, >= 0.
	RatePerSecond float64
	// RateBurst is the bucket's size, and a new source starts with a full bucket. At least 1 when
	// RatePerSecond is set; unused (and >= 0) when it is not.
	RateBurst int
	// Allow lists prefixes that are never banned, capped or rate-limited (health checks, the operator's own
	// hosts). IPv4-mapped IPv6 prefixes are read as IPv4. Nil means none. A client's own address is checked,
	// not its source prefix. Every prefix must be valid.
	Allow []netip.Prefix
	// MaxTracked bounds how many sources are tracked; see Gate for what is forgotten to make room. At
	// least 1.
	MaxTracked int
	// Now returns the current time; nil means time.Now. Tests inject a fake clock.
	Now func() time.Time
	// OnBan, if not nil, is called once per ban (to log it and count it), outside any lock.
	OnBan func(Ban)
	// OnUnban, if not nil, is called once when a ban ends, outside any lock: at expiry (noticed by the next
	// Admit, Offence or Unban of the source, by Sweep, or when room is made for a new source) or by Unban.
	OnUnban func(Ban)
	// IPv4Prefix is the length of the IPv4 prefix judged as one source: every address in it shares one
	// offence count, ban, connection cap and rate. 1..32; 32 judges each address alone.
	IPv4Prefix int
	// IPv6Prefix is the same for IPv6, 1..128. One IPv6 host commonly holds a whole /64.
	IPv6Prefix int
}

// check refuses options NewGate cannot run with, naming each field, all problems joined.
func (o *GateOptions) check() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("new gate: "+format+": %w", append(args, ErrInvalidOptions)...))
	}
	finite := func(v float64) bool { return v >= 0 && !math.IsInf(v, 1) } // false for NaN too
	if !finite(o.OffencesBeforeBan) {
		bad("OffencesBeforeBan %v must be a finite number >= 0", o.OffencesBeforeBan)
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"OffenceWindow", o.OffenceWindow},
		{"BanMin", o.BanMin},
		{"BanMax", o.BanMax},
		{"ForgetAfter", o.ForgetAfter},
	} {
		if d.d <= 0 {
			bad("%s %s must be positive", d.name, d.d)
		}
	}
	if o.BanMin > 0 && o.BanMax < o.BanMin {
		bad("BanMax %s must be at least BanMin %s", o.BanMax, o.BanMin)
	}
	if o.MaxConnsPerIP < 0 {
		bad("MaxConnsPerIP %d must not be negative (0 means no cap)", o.MaxConnsPerIP)
	}
	if !finite(o.RatePerSecond) {
		bad("RatePerSecond %v must be a finite number >= 0 (0 means no rate limit)", o.RatePerSecond)
	}
	if o.RateBurst < 0 || (o.RatePerSecond > 0 && o.RateBurst < 1) {
		bad("RateBurst %d must be at least 1 with a rate", o.RateBurst)
	}
	for i, p := range o.Allow {
		if !p.IsValid() {
			bad("Allow[%d] is not a valid prefix", i)
		}
	}
	if o.MaxTracked < 1 {
		bad("MaxTracked %d must be at least 1", o.MaxTracked)
	}
	if o.IPv4Prefix < 1 || o.IPv4Prefix > 32 {
		bad("IPv4Prefix %d must be 1..32", o.IPv4Prefix)
	}
	if o.IPv6Prefix < 1 || o.IPv6Prefix > 128 {
		bad("IPv6Prefix %d must be 1..128", o.IPv6Prefix)
	}
	return errors.Join(errs...)
}

// Ban describes one ban of a source.
type Ban struct {
	// Source is the banned prefix, masked: the client's address cut to IPv4Prefix or IPv6Prefix bits,
	// e.g. 2001:db8::/64 or 192.0.2.7/32. SourceString formats it for people.
	Source netip.Prefix
	// ClientID is the last client id seen offending from Source, at most 64 bytes of it; empty if none.
	ClientID string
	// Principal is the authenticated user (a SASL user name) of the connection whose offence was the
	// last, at most 64 bytes of it; empty when that connection had not logged in. Bans stay by Source.
	Principal string
	// Since is when the ban began; Until when it ends (for a ban lifted by Unban, when it was lifted).
	Since, Until time.Time
	// Count is how many bans the source has had in its remembered history, 1 for the first.
	Count int
	// Reason is the reason of the offence that earned the ban.
	Reason string
}

// Gate admits or refuses new connections by source: bans earned by repeated offences, a cap on
// concurrent connections and a rate of new ones. Behind a sidecar every client reaches the broker from
// 127.0.0.1, so the broker's own per-IP limits no longer work and the proxy must hold them. A source is
// an address prefix (IPv4Prefix, IPv6Prefix bits), since one IPv6 host commonly holds a whole /64.
//
// Sources live in a table sharded by prefix hash, each shard with its own mutex and map, bounded by
// MaxTracked in total. When a shard is full, a new source takes the place of the least recently seen idle
// entry; failing that, of an expired ban, of the least recently seen connected source (whose cap then
// misses its open connections), and last of the least recently seen ban in force (reported to OnUnban).
// A newcomer is never refused for want of room: an attacker who holds MaxTracked connections or bans from
// as many prefixes must not lock every other client out, and memory stays bounded either way.
// EvictedPinned counts the last two kinds. Allow-listed addresses are never tracked.
//
// Times are kept as nanoseconds since the gate was made, which keeps entries small and comparisons cheap.
// A Gate is safe for concurrent use and starts no goroutines; the owner calls Sweep now and then.
type Gate struct {
	shards []shard
	mask   uint64
	seed   maphash.Seed
	clock  func() time.Time
	epoch  time.Time // as read from clock, for differences
	wall   time.Time // epoch without a monotonic reading, for times reported in Ban

	// tune holds the settings SetOptions may change while the gate runs; each is read through g.t().
	tune atomic.Pointer[tuning]
	// counted is set once a cap or a rate has ever been on, so Release keeps counts right across a
	// SetOptions that turns them off and on again.
	counted atomic.Bool

	perShard   int
	tracked    atomic.Int64
	v4Bits     int
	v6Bits     int
	onBan      func(Ban)
	onUnban    func(Ban)
	maxTracked int

	evictedConnected atomic.Int64 // connected sources forgotten to make room
	evictedBanned    atomic.Int64 // bans in force forgotten to make room

	optsMu sync.Mutex  // guards opts, written by SetOptions
	opts   GateOptions // as NewGate or the last SetOptions took them, for Options
}

// tuning is the part of a gate's settings that SetOptions swaps whole: a reader loads it once per use,
// so it never sees half of one setting and half of another.
type tuning struct {
	allow     []netip.Prefix
	slotLen   int64 // nanoseconds per offence window slot
	threshold float64
	banMin    int64
	banMax    int64
	forget    int64
	maxConns  int32
	rate      float64 // tokens per nanosecond
	burst     float64
	refill    int64 // nanoseconds to refill an empty bucket; Sweep keeps younger entries
	track     bool  // whether Admit must count connections at all (a cap or a rate is set)
}

// t returns the gate's settings in force.
func (g *Gate) t() *tuning { return g.tune.Load() }

// newTuning derives the swappable settings from checked options.
func newTuning(o GateOptions) *tuning {
	t := &tuning{threshold: o.OffencesBeforeBan, maxConns: int32(min(o.MaxConnsPerIP, math.MaxInt32))}
	t.slotLen = max(int64(o.OffenceWindow)/windowSlots, 1)
	t.banMin, t.banMax = int64(min(o.BanMin, longestBan)), int64(min(o.BanMax, longestBan))
	t.forget = int64(o.ForgetAfter)
	if o.RatePerSecond > 0 {
		t.rate = o.RatePerSecond / 1e9
		t.burst = float64(o.RateBurst)
		t.refill = int64(min(t.burst/t.rate, float64(longestBan)))
	}
	t.track = t.maxConns > 0 || t.rate > 0
	for _, p := range o.Allow {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		t.allow = append(t.allow, p.Masked())
	}
	return t
}

// NewGate returns a gate configured by o, or an error wrapping ErrInvalidOptions for every field out of
// range.
func NewGate(o GateOptions) (*Gate, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	g := &Gate{
		seed:       maphash.MakeSeed(),
		clock:      o.Now,
		onBan:      o.OnBan,
		onUnban:    o.OnUnban,
		maxTracked: o.MaxTracked,
		v4Bits:     o.IPv4Prefix,
		v6Bits:     o.IPv6Prefix,
		opts:       o,
	}
	if g.clock == nil {
		g.clock = time.Now
	}
	g.epoch = g.clock()
	g.wall = g.epoch.Round(0)
	t := newTuning(o)
	g.tune.Store(t)
	g.counted.Store(t.track)

	// Up to 16 shards, but never fewer than 64 entries a shard, so a small bound still spreads evenly
	// and shards*perShard never exceeds MaxTracked.
	n := 16
	for n > 1 && g.maxTracked/n < 64 {
		n /= 2
	}
	g.shards = make([]shard, n)
	g.mask = uint64(n - 1)
	g.perShard = g.maxTracked / n
	for i := range g.shards {
		g.shards[i].m = make(map[netip.Prefix]*entry)
	}
	return g, nil
}

// Options returns the options the gate runs with, as NewGate took them.
func (g *Gate) Options() GateOptions {
	g.optsMu.Lock()
	defer g.optsMu.Unlock()
	return g.opts
}

// Admit judges a new connection from addr before any byte is read, by addr's source. ok=false with a
// Reason when banned, over the per-source concurrent cap, or over the rate (checked in that order; a
// refused connection takes no token). On ok=true the caller must call Release(addr) when the connection
// ends. For a known source it is one map lookup under a shard mutex and allocates nothing.
func (g *Gate) Admit(addr netip.Addr) (ok bool, reason Reason) {
	addr = normalize(addr)
	if g.allowed(addr) {
		return true, ""
	}
	t := g.t()
	now := g.now()
	src := g.source(addr)
	s := g.shard(src)
	var n note
	defer g.notify(&n) // runs after the unlock below
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[src]
	if e == nil {
		if !t.track {
			return true, "" // nothing to count and no ban to find
		}
		e = g.insert(s, src, now, &n)
	}
	defer s.touch(e, now)
	if e.banned {
		if now < e.until {
			return false, ReasonBanned
		}
		n.unban, n.hasUnban = g.endBan(e, e.until), true
	}
	if !t.track {
		return true, ""
	}
	if t.maxConns > 0 && e.conns >= t.maxConns {
		return false, ReasonPerIPCap
	}
	if t.rate > 0 {
		e.tokens = min(t.burst, e.tokens+float64(now-e.tokensAt)*t.rate)
		e.tokensAt = now
		if e.tokens < 1 {
			return false, ReasonRate
		}
		e.tokens--
	}
	e.conns++
	return true, ""
}

// Release ends a connection admitted by Admit(addr).
func (g *Gate) Release(addr netip.Addr) {
	if !g.counted.Load() {
		return
	}
	addr = normalize(addr)
	if g.allowed(addr) {
		return
	}
	now := g.now()
	src := g.source(addr)
	s := g.shard(src)
	s.mu.Lock()
	defer s.mu.Unlock()
	// A source forgotten to make room while connected, or made anew since, may miss this connection; the
	// count never goes below zero.
	if e := s.m[src]; e != nil && e.conns > 0 {
		e.conns--
		s.touch(e, now)
	}
}

// Offence records an offence of addr's source with a weight (a frame over the limit may weigh more than a
// timeout); clientID may be "". It returns the source's ban and true when the source is banned now, whether
// this offence earned the ban or an earlier one did: an offence can come from a connection admitted before
// the ban, and the caller ends that connection too, or a source keeps every connection it opened before its
// ban. OnBan runs only for a new ban. An offence of a source already banned adds nothing to its count.
// Offences from allow-listed addresses or with a weight that is not positive are ignored.
func (g *Gate) Offence(addr netip.Addr, clientID string, reason string, weight float64) (Ban, bool) {
	return g.OffenceBy(addr, Offender{ClientID: clientID}, reason, weight)
}

// Offender is who committed an offence, as far as the proxy knows: informative only, as bans are by
// source.
type Offender struct {
	// ClientID is the request header's client id; may be "".
	ClientID string
	// Principal is the user the broker accepted on the offending connection; "" before a login.
	Principal string
}

// OffenceBy is Offence naming the offender's client id and principal, both kept (clipped) with the source
// for the ban log and Bans: the client id when not empty, the principal always, so that a ban shows the
// principal of the offence that earned it.
func (g *Gate) OffenceBy(addr netip.Addr, who Offender, reason string, weight float64) (Ban, bool) {
	clientID := who.ClientID
	addr = normalize(addr)
	if g.allowed(addr) || !(weight > 0) {
		return Ban{}, false
	}
	now := g.now()
	if g.t().threshold <= 0 {
		return Ban{}, false
	}
	var n note
	defer g.notify(&n) // runs after the unlock below
	s, e := g.lockEntry(addr, now, &n)
	defer s.mu.Unlock()
	defer s.touch(e, now)
	if e.banned {
		if now < e.until {
			return g.banOf(e), true
		}
		n.unban, n.hasUnban = g.endBan(e, e.until), true
	}
	if e.bans > 0 && now-e.dirtyAt >= g.t().forget {
		e.bans = 0
	}
	e.dirtyAt = max(e.dirtyAt, now)
	if clientID = clipClientID(clientID); clientID != "" && clientID != e.clientID {
		// The string may alias a pooled chunk; keep a copy (only on change, so repeats cost nothing).
		e.clientID = strings.Clone(clientID)
	}
	if reason != e.reason {
		e.reason = strings.Clone(reason)
	}
	if p := clipClientID(who.Principal); p != e.principal {
		e.principal = strings.Clone(p)
	}
	if e.offences.add(g.slot(now), weight) < g.t().threshold {
		return Ban{}, false
	}
	e.bans++
	e.banned = true
	e.since = now
	e.until = now + g.banFor(e.bans)
	e.dirtyAt = e.until
	e.offences.reset()
	n.ban, n.hasBan = g.banOf(e), true
	return n.ban, true
}

// Tracked returns how many sources are tracked now (for a gauge); it never exceeds MaxTracked.
func (g *Gate) Tracked() int { return int(g.tracked.Load()) }

// EvictedPinned returns how many sources were forgotten to make room while they still had connections
// open, and while banned (for counters). Either means the table was full of sources worth keeping: an
// attack from many prefixes, or MaxTracked set too low.
func (g *Gate) EvictedPinned() (connected, banned int64) {
	return g.evictedConnected.Load(), g.evictedBanned.Load()
}

// Source returns the source addr is judged as: its prefix of IPv4Prefix or IPv6Prefix bits, masked.
func (g *Gate) Source(addr netip.Addr) netip.Prefix { return g.source(normalize(addr)) }

// source is Source for a normalized address.
func (g *Gate) source(a netip.Addr) netip.Prefix {
	bits := g.v6Bits
	if a.Is4() {
		bits = g.v4Bits
	}
	p, _ := a.Prefix(bits) // fails only for the zero Addr, whose sources all share the zero Prefix
	return p
}

// SourceString formats a source for people: a bare address for a single address (192.0.2.7, ::1),
// the prefix otherwise (2001:db8::/64), as the allow list and DELETE /bans/ take them.
func SourceString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// now returns the time since the epoch in nanoseconds, never negative.
func (g *Gate) now() int64 { return max(int64(g.clock().Sub(g.epoch)), 0) }

// slot returns the offence window slot of a time.
func (g *Gate) slot(now int64) int64 { return now / g.t().slotLen }

// at returns the wall time of a time since the epoch.
func (g *Gate) at(t int64) time.Time { return g.wall.Add(time.Duration(t)) }

func (g *Gate) allowed(a netip.Addr) bool {
	for _, p := range g.t().allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (g *Gate) shard(p netip.Prefix) *shard {
	b := p.Addr().As16() // masked, and the length follows from the family, so the address alone is the key
	return &g.shards[maphash.Bytes(g.seed, b[:])&g.mask]
}

// normalize makes one key of the spellings of an address: an IPv4 client reached over a dual-stack socket
// arrives as ::ffff:a.b.c.d, and a zone names an interface, not a client.
func normalize(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

// note carries what a locked operation must report once the lock is released. An operation ends at most
// one ban (its source's, or the one it evicts to make room) and starts at most one.
type note struct {
	unban, ban       Ban
	hasUnban, hasBan bool
}

func (g *Gate) notify(n *note) {
	if n.hasUnban && g.onUnban != nil {
		g.onUnban(n.unban)
	}
	if n.hasBan && g.onBan != nil {
		g.onBan(n.ban)
	}
}
