package limits

import (
	"strings"
	"sync"
)

// windowSlots is how many sub-windows an offence window is cut into. A plain fixed window lets an offender
// put nearly twice the threshold into a short stretch across a window boundary; with eight slots an offence
// counts for between 7/8 of the window and the whole of it, for 72 bytes per tracked source.
const windowSlots = 8

// window sums weighted offences over the last windowSlots slots (a sliding window). Slots are absolute
// numbers (time since the gate's epoch divided by the slot length), so the zero window is empty.
type window struct {
	slots [windowSlots]float64
	last  int64 // the newest slot written
}

// advance zeroes the slots that fell out of the window by slot now. Time never runs backward here: an
// older slot is treated as the newest one.
func (w *window) advance(now int64) {
	if now <= w.last {
		return
	}
	if now-w.last >= windowSlots {
		w.slots = [windowSlots]float64{}
	} else {
		for s := w.last + 1; s <= now; s++ {
			w.slots[s%windowSlots] = 0
		}
	}
	w.last = now
}

// add records weight at slot now and returns the sum over the window.
func (w *window) add(now int64, weight float64) float64 {
	w.advance(now)
	w.slots[w.last%windowSlots] += weight // w.last >= now after advance
	return w.sum()
}

func (w *window) sum() float64 {
	var t float64
	for _, v := range w.slots {
		t += v
	}
	return t
}

// scoreAt returns the sum the window would have at slot now, without changing it.
func (w *window) scoreAt(now int64) float64 {
	c := *w
	c.advance(now)
	return c.sum()
}

func (w *window) reset() { w.slots = [windowSlots]float64{} }

// maxStoredClientID bounds the client id kept per source. An offence may be exactly a client id that is too
// long (up to 32 KiB), and MaxTracked copies of that would be a memory attack of their own.
const maxStoredClientID = 256

// clipClientID returns the prefix of id that is stored and reported.
func clipClientID(id string) string {
	if len(id) > maxStoredClientID {
		return id[:maxStoredClientID]
	}
	return id
}

// clientEntry is the offence window of one client id.
type clientEntry struct {
	links[clientEntry]
	id string
	w  window
}

func (e *clientEntry) link() *links[clientEntry] { return &e.links }

// clientTracker counts offences per client id, in an LRU bounded like the address table. Client ids are
// chosen by the client, so they are only ever a hint: bans stay per source. Recency is the time of the last
// offence, so Sweep can stop at the first entry whose window is not yet empty.
type clientTracker struct {
	mu  sync.Mutex
	m   map[string]*clientEntry
	lru lru[clientEntry, *clientEntry]
	max int
}

func newClientTracker(maxTracked int) *clientTracker {
	return &clientTracker{m: make(map[string]*clientEntry), max: maxTracked}
}

// add records an offence of id at slot now and returns the sum over the window.
func (c *clientTracker) add(id string, now int64, weight float64) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[id]
	if e == nil {
		if len(c.m) >= c.max {
			old := c.lru.back
			c.lru.remove(old)
			delete(c.m, old.id)
			*old = clientEntry{}
			e = old
		} else {
			e = new(clientEntry)
		}
		e.id = strings.Clone(id) // the caller's string may alias a pooled buffer
		e.w.last = now
		c.m[e.id] = e
		c.lru.pushFront(e)
	} else {
		c.lru.moveToFront(e)
	}
	return e.w.add(now, weight)
}

// score returns the offences of id within the window at slot now.
func (c *clientTracker) score(id string, now int64) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[id]; e != nil {
		return e.w.scoreAt(now)
	}
	return 0
}

// sweep drops the client ids whose window is empty at slot now.
func (c *clientTracker) sweep(now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.lru.back; e != nil; {
		if now-e.w.last < windowSlots {
			return // this one and every more recent one still has offences in the window
		}
		prev := c.lru.prev(e)
		c.lru.remove(e)
		delete(c.m, e.id)
		e = prev
	}
}

func (c *clientTracker) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
