package limits

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrPoolExhausted is returned by Get when the budget stayed spent for the whole wait.
var ErrPoolExhausted = errors.New("chunk pool exhausted")

// ErrPoolClosed is returned by Get when its cancel channel closed while it waited.
var ErrPoolClosed = errors.New("chunk pool closed")

// ErrInvalidOptions is wrapped by the constructors when an option is out of range.
var ErrInvalidOptions = errors.New("invalid options")

// maxChunks bounds the number of chunks in one pool. The free list is a channel with one slot per chunk,
// allocated up front (24 bytes a slot), so a tiny chunk size with a huge budget would cost real memory
// before the first Get; 1<<20 slots is 24 MiB and far beyond any sane configuration.
const maxChunks = 1 << 20

// Pool hands out fixed-size chunks from one total budget. Chunks are allocated lazily up to the budget and
// then recycled through a free list (never left to the GC); nothing is ever allocated by a declared size.
//
// This is the Kafka producer's BufferPool without its weak spot: there is no path that allocates more than
// one chunk, so a frame that declares 50 MiB costs the proxy chunks only as its bytes actually arrive, and
// the total never passes the budget. When the budget is spent Get waits (backpressure) instead of growing.
//
// The free list is a buffered channel: a Put hands the chunk straight to the longest-waiting Get (the
// runtime queues channel receivers in order), so a waiter cannot be starved by later callers on the fast
// path. Chunk contents are not cleared on Put; callers use only the bytes they have written.
type Pool struct {
	free      chan []byte
	onWait    func(time.Duration)
	chunk     int
	chunks    int64
	allocated atomic.Int64 // chunks ever made; never decreases, never passes chunks
	inUse     atomic.Int64 // bytes handed out and not yet put back
	highWater atomic.Int64
	waiters   atomic.Int64
	big       chan struct{} // cap 1: held by the one Reserve of several chunks that may wait
}

// PoolOptions configures NewPool.
type PoolOptions struct {
	// ChunkBytes is the size of every chunk; it must be positive.
	ChunkBytes int
	// TotalBytes is the budget; capacity is TotalBytes / ChunkBytes chunks, at least one. It must be positive.
	TotalBytes int64
	// OnWait, if not nil, is called with the time Get spent waiting whenever it had to wait, whatever the
	// outcome (a histogram of backpressure). Nil means no report.
	OnWait func(time.Duration)
}

// NewPool returns a pool with the budget of o. No chunk is allocated until the first Get.
func NewPool(o PoolOptions) (*Pool, error) {
	if o.ChunkBytes <= 0 {
		return nil, fmt.Errorf("new pool: chunk bytes %d must be positive: %w", o.ChunkBytes, ErrInvalidOptions)
	}
	if o.TotalBytes <= 0 {
		return nil, fmt.Errorf("new pool: total bytes %d must be positive: %w", o.TotalBytes, ErrInvalidOptions)
	}
	n := max(o.TotalBytes/int64(o.ChunkBytes), 1)
	if n > maxChunks {
		return nil, fmt.Errorf("new pool: %d chunks of %d bytes exceed the limit of %d chunks; use larger chunks: %w",
			n, o.ChunkBytes, maxChunks, ErrInvalidOptions)
	}
	return &Pool{
		free:   make(chan []byte, n),
		big:    make(chan struct{}, 1),
		onWait: o.OnWait,
		chunk:  o.ChunkBytes,
		chunks: n,
	}, nil
}

// Get returns one chunk (len == ChunkBytes). When the budget is spent it waits until a chunk is put back,
// the wait elapses (ErrPoolExhausted) or cancel is closed (ErrPoolClosed); a wait <= 0 fails at once and a
// nil cancel never fires. The fast path, taken whenever a chunk is free or the budget is not yet allocated,
// neither allocates (after the chunk's first use) nor starts a timer nor looks at cancel.
func (p *Pool) Get(wait time.Duration, cancel <-chan struct{}) ([]byte, error) {
	if c, ok := p.TryGet(); ok {
		return c, nil
	}
	if wait <= 0 {
		return nil, ErrPoolExhausted
	}
	// Every chunk is allocated and out, so one can only come back through the channel: a Put between
	// TryGet and the select below lands in the buffer and is received here. An Unreserve frees a slot
	// instead; it feeds the channel when it sees a waiter, and a waiter counted after its look tries
	// TryGet once more.
	p.waiters.Add(1)
	defer p.waiters.Add(-1)
	if c, ok := p.TryGet(); ok {
		return c, nil
	}
	start := time.Now()
	t := time.NewTimer(wait)
	defer t.Stop()
	var err error
	select {
	case c := <-p.free:
		p.take()
		p.reportWait(start)
		return c, nil
	case <-t.C:
		err = ErrPoolExhausted
	case <-cancel:
		err = ErrPoolClosed
	}
	p.reportWait(start)
	return nil, err
}

// TryGet returns a chunk if one is free or the budget still allows a new one; it never waits.
func (p *Pool) TryGet() ([]byte, bool) {
	select {
	case c := <-p.free:
		p.take()
		return c, true
	default:
	}
	for {
		n := p.allocated.Load()
		if n >= p.chunks {
			return nil, false
		}
		if p.allocated.CompareAndSwap(n, n+1) {
			c := make([]byte, p.chunk)
			p.take()
			return c, true
		}
	}
}

// Reserve takes n bytes of the budget, rounded up to whole chunks, for memory the caller allocates
// itself (a response decoded to be rewritten, which needs one contiguous buffer and kmsg's structs), so
// that it is counted like chunks and the budget stays a bound on everything held for clients. Reserved
// chunks leave the pool: a free one is dropped for the GC, a never-allocated one is never made. When the
// budget is spent it waits in line with Get, chunk by chunk, holding what it has (as a frame does), until
// wait elapses (ErrPoolExhausted) or cancel closes (ErrPoolClosed); then nothing stays reserved. Only
// one reservation of more than a chunk waits at a time, so two of them never hold parts of the budget
// the other needs. It returns the number of chunks to pass to Unreserve. More than the whole budget
// fails at once with ErrPoolExhausted.
func (p *Pool) Reserve(n int64, wait time.Duration, cancel <-chan struct{}) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	k := int((n + int64(p.chunk) - 1) / int64(p.chunk))
	if int64(k) > p.chunks {
		return 0, fmt.Errorf("reserve %d bytes: more than the budget of %d: %w", n, p.Capacity(), ErrPoolExhausted)
	}
	deadline := time.Now().Add(wait)
	if k > 1 {
		select {
		case p.big <- struct{}{}:
		default:
			if wait <= 0 {
				return 0, ErrPoolExhausted
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case p.big <- struct{}{}:
			case <-t.C:
				return 0, ErrPoolExhausted
			case <-cancel:
				return 0, ErrPoolClosed
			}
		}
		defer func() { <-p.big }()
	}
	for i := range k {
		if p.reserveFree() {
			continue
		}
		// The chunk Get returns is dropped: its slot is reserved.
		if _, err := p.Get(time.Until(deadline), cancel); err != nil {
			p.Unreserve(i)
			return 0, err
		}
	}
	return k, nil
}

// Keep turns a chunk the caller holds into one chunk of reserved budget (as Reserve takes), for memory
// the caller allocates in its place: the chunk itself is dropped and must not be used again. It never
// waits. It returns 1, to pass to Unreserve with the rest.
func (p *Pool) Keep(c []byte) int {
	if cap(c) != p.chunk {
		panic(fmt.Sprintf("limits: Keep of a chunk with capacity %d from a pool of %d-byte chunks", cap(c), p.chunk))
	}
	return 1 // the slot stays allocated and in use; Unreserve frees it
}

// reserveFree reserves one slot without waiting: an unallocated slot or, when every slot is allocated, a
// free chunk (dropped). Unallocated slots go first so that reservations made and given back over and over
// (a kernel pipe's bytes, counted per frame) do not turn the free chunks into garbage each time.
func (p *Pool) reserveFree() bool {
	for {
		n := p.allocated.Load()
		if n >= p.chunks {
			break
		}
		if p.allocated.CompareAndSwap(n, n+1) {
			p.take()
			return true
		}
	}
	select {
	case <-p.free:
		p.take()
		return true
	default:
		return false
	}
}

// Unreserve gives back k chunks of budget taken by Reserve, once the caller's memory is garbage. Each
// becomes an unallocated slot again, or, when a Get is waiting, a fresh chunk handed to it.
func (p *Pool) Unreserve(k int) {
	for range k {
		if p.inUse.Add(-int64(p.chunk)) < 0 {
			panic("limits: Unreserve of more than was reserved")
		}
		p.allocated.Add(-1)
		if p.waiters.Load() > 0 {
			for {
				n := p.allocated.Load()
				if n >= p.chunks {
					break // a waiter's own TryGet took the slot
				}
				if p.allocated.CompareAndSwap(n, n+1) {
					p.free <- make([]byte, p.chunk)
					break
				}
			}
		}
	}
}

// Put returns a chunk to the pool. c must come from Get or TryGet of this pool (it may have been resliced);
// a chunk of another capacity, or more chunks put than were taken, is a programming error and panics.
func (p *Pool) Put(c []byte) {
	if cap(c) != p.chunk {
		panic(fmt.Sprintf("limits: Put of a chunk with capacity %d into a pool of %d-byte chunks", cap(c), p.chunk))
	}
	// Lower the count before the chunk becomes available, so InUse never overstates the budget.
	if p.inUse.Add(-int64(p.chunk)) < 0 {
		panic("limits: Put of a chunk that was not taken from this pool")
	}
	select {
	case p.free <- c[:p.chunk]:
	default:
		panic("limits: Put of more chunks than the pool holds")
	}
}

// take accounts for one chunk handed out.
func (p *Pool) take() {
	n := p.inUse.Add(int64(p.chunk))
	for {
		hw := p.highWater.Load()
		if n <= hw || p.highWater.CompareAndSwap(hw, n) {
			return
		}
	}
}

func (p *Pool) reportWait(start time.Time) {
	if p.onWait != nil {
		p.onWait(time.Since(start))
	}
}

// ChunkBytes returns the size of every chunk.
func (p *Pool) ChunkBytes() int { return p.chunk }

// Capacity returns the budget in bytes: the number of chunks times their size.
func (p *Pool) Capacity() int64 { return p.chunks * int64(p.chunk) }

// InUse returns the bytes handed out and not yet put back.
func (p *Pool) InUse() int64 { return p.inUse.Load() }

// HighWater returns the largest InUse seen since the pool was made or ResetHighWater was last called.
func (p *Pool) HighWater() int64 { return p.highWater.Load() }

// ResetHighWater starts a new high-water period from the current InUse (a scrape can report the peak of
// each interval).
func (p *Pool) ResetHighWater() { p.highWater.Store(p.inUse.Load()) }

// waiting returns how many Get calls are waiting for a chunk right now.
func (p *Pool) waiting() int { return int(p.waiters.Load()) }
