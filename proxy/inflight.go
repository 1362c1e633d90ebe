package proxy

import (
	"sync"
	"time"
)

// inflightReq is a request in flight: the client is owed its response.
type inflightReq struct {
	corr    int32
	key     int16
	version int16
	// due is when the broker's response is overdue (queued + RequestTimeout).
	due time.Time
	// local, when non-nil, is a complete response frame kafkaguard built
	// itself, in pooled chunks; it is written in its turn instead of
	// reading the upstream, and its chunks released.
	local *answer
}

// pumpLinger is how long a response pump with nothing in flight waits for more
// before its goroutine ends. An idle connection then runs one goroutine (the
// request pump, blocked in a read), not two; a busy one keeps its pump.
const pumpLinger = time.Second

// inflight is the queue of a connection's requests in flight, in request order,
// and the lifecycle of the response pump that delivers them: the pump is
// started by the first entry, lingers a while when the queue runs dry, and
// ends; the next entry starts it again.
type inflight struct {
	mu      sync.Mutex
	queue   []inflightReq // queue[head:] is in flight, oldest first
	head    int
	pumping bool // a response pump goroutine is running
	busy    bool // the pump is delivering an entry it took off the queue
	ended   bool // the request side is done: the pump ends once the queue is empty

	slots  chan struct{} // one per request in flight, so at most MaxInflight are
	wake   chan struct{} // cap 1: tells a lingering pump of a new entry or the end
	failed chan struct{} // closed when the response side fails
	fail   sync.Once
	wg     sync.WaitGroup // the running pump
}

// enqueue records a request in flight and makes sure a pump runs. It
// blocks while MaxInflight requests are in flight, and fails once the
// response side has failed.
func (c *conn) enqueue(p inflightReq) bool {
	q := &c.inflight
	if q.slots == nil {
		q.slots = make(chan struct{}, c.s.opts.MaxInflight)
		q.wake = make(chan struct{}, 1)
		q.failed = make(chan struct{})
	}
	select {
	case q.slots <- struct{}{}:
	case <-q.failed:
		return false
	}
	select {
	case <-q.failed:
		<-q.slots
		return false
	default:
	}
	p.due = time.Now().Add(c.s.live().RequestTimeout)
	q.mu.Lock()
	q.queue = append(q.queue, p)
	start := !q.pumping
	if start {
		q.pumping = true
		q.wg.Add(1)
	}
	q.mu.Unlock()
	if start {
		go c.responseLoop()
	} else {
		q.notify()
	}
	return true
}

func (q *inflight) notify() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next returns the oldest request in flight, waiting up to pumpLinger for
// one. ok is false when the pump should end: the queue stayed empty, or the
// request side is done and nothing is in flight.
func (q *inflight) next(timer **time.Timer) (p inflightReq, ok bool) {
	for {
		q.mu.Lock()
		q.busy = false // the entry taken last time is delivered
		if q.head < len(q.queue) {
			q.busy = true
			p = q.queue[q.head]
			q.queue[q.head] = inflightReq{} // drop the local response's bytes
			q.head++
			if q.head == len(q.queue) {
				q.queue, q.head = q.queue[:0], 0
			}
			q.mu.Unlock()
			return p, true
		}
		if q.ended {
			q.pumping = false
			q.mu.Unlock()
			return p, false
		}
		q.mu.Unlock()
		if *timer == nil {
			*timer = time.NewTimer(pumpLinger)
		} else {
			(*timer).Reset(pumpLinger)
		}
		select {
		case <-q.wake:
			(*timer).Stop()
		case <-(*timer).C:
			q.mu.Lock()
			if q.head == len(q.queue) {
				q.pumping = false
				q.mu.Unlock()
				return p, false
			}
			q.mu.Unlock()
		}
	}
}

// peek returns the oldest request in flight without taking it. Only the
// pump takes entries, so the head it peeks is the head it pops.
func (q *inflight) peek() (p inflightReq, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head < len(q.queue) {
		return q.queue[q.head], true
	}
	return p, false
}

// pop takes the oldest request in flight, which the pump peeked and
// delivers with the one it holds (see relayBuffered); the pump stays busy.
func (q *inflight) pop() {
	q.mu.Lock()
	q.queue[q.head] = inflightReq{}
	q.head++
	if q.head == len(q.queue) {
		q.queue, q.head = q.queue[:0], 0
	}
	q.mu.Unlock()
}

// finish tells the pump the request side is done and waits for it: it ends
// once every request in flight is answered (or the sockets are closed).
func (q *inflight) finish() {
	q.mu.Lock()
	q.ended = true
	q.mu.Unlock()
	if q.wake != nil {
		q.notify()
	}
	q.wg.Wait()
}

// live reports whether requests are in flight or a pump runs.
func (q *inflight) live() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pumping || q.head < len(q.queue)
}

// answering reports whether a request is in flight: queued, or its
// response being delivered. A lingering pump with nothing to deliver reads
// nothing from the broker.
func (q *inflight) answering() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.busy || q.head < len(q.queue)
}

// rest removes and returns what is still queued. Called once the pump has
// ended (a failed pump leaves entries behind), so that the chunks of local
// answers in them go back to the pool.
func (q *inflight) rest() []inflightReq {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.queue[q.head:]
	q.queue, q.head = nil, 0
	return r
}

// failNow marks the response side failed: enqueue refuses from now on.
func (q *inflight) failNow() {
	q.fail.Do(func() { close(q.failed) })
	q.mu.Lock()
	q.pumping = false
	q.busy = false
	q.mu.Unlock()
}
