package limits

import (
	"fmt"
	"slices"
)

// SetOptions changes a running gate's settings and keeps what it remembers: every ban in force, each
// source's ban history (so a repeat offender's next ban still doubles), its connection count and its
// token bucket. It is how a config reload reaches the gate.
//
// What the source table is built on cannot change live, and SetOptions refuses it (ErrInvalidOptions):
// IPv4Prefix and IPv6Prefix (every entry is keyed by its prefix), MaxTracked (the shards are sized by it)
// and Now. OnBan and OnUnban keep the gate's own. A changed OffenceWindow starts every source's offence
// count afresh, since the counts were summed in slots of the old length; bans are unaffected. A lowered
// cap or rate applies to the next connection; connections already open stay.
func (g *Gate) SetOptions(o GateOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	g.optsMu.Lock()
	defer g.optsMu.Unlock()
	old := g.opts
	var fixed []string
	if o.IPv4Prefix != old.IPv4Prefix {
		fixed = append(fixed, fmt.Sprintf("IPv4Prefix %d -> %d", old.IPv4Prefix, o.IPv4Prefix))
	}
	if o.IPv6Prefix != old.IPv6Prefix {
		fixed = append(fixed, fmt.Sprintf("IPv6Prefix %d -> %d", old.IPv6Prefix, o.IPv6Prefix))
	}
	if o.MaxTracked != old.MaxTracked {
		fixed = append(fixed, fmt.Sprintf("MaxTracked %d -> %d", old.MaxTracked, o.MaxTracked))
	}
	if len(fixed) > 0 {
		return fmt.Errorf("gate: cannot change while running: %v: %w", fixed, ErrInvalidOptions)
	}
	t := newTuning(o)
	prev := g.tune.Swap(t)
	if t.track {
		g.counted.Store(true)
	}
	if t.slotLen != prev.slotLen {
		now := g.now()
		for i := range g.shards {
			s := &g.shards[i]
			s.mu.Lock()
			for _, e := range s.m {
				e.offences = window{last: now / t.slotLen}
			}
			s.mu.Unlock()
		}
	}
	o.Now, o.OnBan, o.OnUnban = old.Now, old.OnBan, old.OnUnban
	o.Allow = slices.Clone(o.Allow)
	g.opts = o
	return nil
}
