package limits

import (
	"container/heap"
	"slices"
)

// TopBans returns the n bans in force that come first by cmp (cmp(a, b) < 0 when a ranks before b),
// in that order, and how many bans are in force. It holds at most n bans at once, so a status page that
// shows the first hundred of a full table's bans costs a hundred bans of memory, not the table's worth
// that Bans copies.
func (g *Gate) TopBans(n int, cmp func(a, b Ban) int) (top []Ban, active int) {
	if n <= 0 {
		return nil, g.ActiveBans()
	}
	now := g.now()
	h := &banHeap{cmp: cmp, b: make([]Ban, 0, n)}
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		for e := s.bans.back; e != nil; e = s.bans.prev(e) {
			if now >= e.until {
				continue
			}
			active++
			b := g.banOf(e)
			switch {
			case len(h.b) < n:
				heap.Push(h, b)
			case cmp(b, h.b[0]) < 0: // ranks before the last of the top n
				h.b[0] = b
				heap.Fix(h, 0)
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(h.b, cmp)
	return h.b, active
}

// banHeap keeps the last-ranked ban at the root, the one a better ban replaces.
type banHeap struct {
	cmp func(a, b Ban) int
	b   []Ban
}

func (h *banHeap) Len() int           { return len(h.b) }
func (h *banHeap) Less(i, j int) bool { return h.cmp(h.b[i], h.b[j]) > 0 }
func (h *banHeap) Swap(i, j int)      { h.b[i], h.b[j] = h.b[j], h.b[i] }
func (h *banHeap) Push(x any)         { h.b = append(h.b, x.(Ban)) }
func (h *banHeap) Pop() any {
	b := h.b[len(h.b)-1]
	h.b = h.b[:len(h.b)-1]
	return b
}
