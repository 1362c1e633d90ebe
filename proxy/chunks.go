package proxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/kafkaguard/kafkaguard/limits"
)

// getChunk takes a chunk from the pool, waiting at most PoolWait. When the
// pool is spent it evicts, one at a time, the connections whose unfinished
// frames (still waiting for client bytes; a frame waiting on the broker is
// not one) have held chunks longest (at once for a frame a second old, else
// after 200 ms of waiting): a few hundred slow clients declaring frames just
// under the limit would otherwise hold the whole pool and starve everyone.
func (c *conn) getChunk() ([]byte, bool) {
	chunk, err := c.takeChunk()
	if err != nil {
		c.poolSpent(apiNone, err)
		return nil, false
	}
	return chunk, true
}

// takeChunk is getChunk without the bookkeeping of a failure.
func (c *conn) takeChunk() ([]byte, error) {
	pool := c.s.opts.Pool
	if chunk, ok := pool.TryGet(); ok {
		return chunk, nil
	}
	// The pool is spent. A frame unfinished for evictStale is evicted at
	// once; younger ones only after evictAfter of waiting.
	c.s.evictSlowest(c, evictStale)
	deadline := time.Now().Add(c.s.opts.PoolWait)
	for {
		chunk, err := pool.Get(min(time.Until(deadline), evictAfter), c.s.done)
		if err == nil {
			return chunk, nil
		}
		if errors.Is(err, limits.ErrPoolClosed) || !time.Now().Before(deadline) {
			return nil, err
		}
		c.s.evictSlowest(c, evictAfter)
	}
}

const (
	// evictAfter is how long a chunk request waits before it evicts a
	// slow frame at least that old.
	evictAfter = 200 * time.Millisecond
	// evictStale is the age from which a frame still holding chunks is
	// evicted as soon as the pool is spent.
	evictStale = time.Second
)

// evictSlowest closes the connection, other than requester, whose unfinished
// frame started first, if it started before the requester's own frame and
// at least minAge ago. It reports whether it evicted one.
func (s *Server) evictSlowest(requester *conn, minAge time.Duration) bool {
	limit := time.Now().Add(-minAge).UnixNano()
	if own := requester.holdSince.Load(); own != 0 && own < limit {
		limit = own
	}
	var victim *conn
	oldest := limit
	s.mu.Lock()
	for c := range s.conns {
		if h := c.holdSince.Load(); c != requester && h != 0 && h < oldest {
			victim, oldest = c, h
		}
	}
	s.mu.Unlock()
	if victim == nil {
		return false
	}
	victim.evict(time.Duration(time.Now().UnixNano() - oldest))
	return true
}

// evict ends a connection whose frame held pool chunks too long while others
// waited for them. It runs on another connection's goroutine, so it touches
// only what is safe to share, and closing the socket wakes the victim's read.
func (c *conn) evict(age time.Duration) {
	if h := c.holdSince.Load(); h == 0 || !c.holdSince.CompareAndSwap(h, 0) {
		return
	}
	err := fmt.Errorf("frame unfinished after %v while the chunk pool was spent", age.Round(time.Millisecond))
	if c.refuseAs(reasonSlowFrame, apiNone, "", err) {
		c.client.Close()
	}
}

func (c *conn) putChunks() {
	for i, ch := range c.req.more {
		c.s.opts.Pool.Put(ch)
		c.req.more[i] = nil
	}
	c.req.more = c.req.more[:0]
}

// reserveBytes is takeChunk for a reservation of n bytes.
func (c *conn) reserveBytes(n int64) (int, error) {
	pool := c.s.opts.Pool
	k, err := pool.Reserve(n, 0, nil)
	if err == nil || n > pool.Capacity() {
		return k, err
	}
	c.evictFor(n, evictStale)
	deadline := time.Now().Add(c.s.opts.PoolWait)
	for {
		k, err := pool.Reserve(n, min(time.Until(deadline), evictAfter), c.s.done)
		if err == nil {
			return k, nil
		}
		if errors.Is(err, limits.ErrPoolClosed) || !time.Now().Before(deadline) {
			return 0, err
		}
		c.evictFor(n, evictAfter)
	}
}

// evictFor evicts slow frames at least minAge old until the ones evicted
// hold enough chunks for n bytes the pool lacks: a reservation of several
// chunks would otherwise free one a round and give up at pool.wait while
// slow clients keep the rest (a chunk request needs one; it evicts one).
// Every evicted frame holds at least a chunk; what it holds is returned
// when its own goroutine sees the close.
func (c *conn) evictFor(n int64, minAge time.Duration) {
	pool := c.s.opts.Pool
	missing := n - (pool.Capacity() - pool.InUse())
	for chunk := int64(pool.ChunkBytes()); missing > 0; missing -= chunk {
		if !c.s.evictSlowest(c, minAge) {
			return
		}
	}
}
