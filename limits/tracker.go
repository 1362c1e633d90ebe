package limits

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

// maxStoredClientID bounds the client id kept per source, for the ban log and /bans. An offence may be
// exactly a client id that is too long (up to 32 KiB), and MaxTracked copies of that would be a memory attack
// of their own; 64 bytes tell most clients apart (client ids are a hint anyway) for at most 3.2 MB at the
// default bound. The principal kept per source (Offender.Principal) is clipped to the same length: another
// 3.2 MB at most.
const maxStoredClientID = 64

// clipClientID returns the prefix of id (a client id or a principal) that is stored and reported.
func clipClientID(id string) string {
	if len(id) > maxStoredClientID {
		return id[:maxStoredClientID]
	}
	return id
}
