//go:build linux

package proxy

// unsettled counts the pipes open but not on the free list (taken by a
// frame, or leaked) and the free ones that still hold bytes (which put
// must close instead): both 0 once every frame has ended.
func (ps *pipes) unsettled() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := int(ps.open.Load()) - len(ps.free)
	for _, p := range ps.free {
		if p.held != 0 {
			n++
		}
	}
	return n
}
