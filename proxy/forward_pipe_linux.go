//go:build linux

package proxy

import (
	"fmt"
	"net"
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
)

// forwardPiped stores a frame larger than a chunk whole before the broker
// sees its length prefix, as forward does, but keeps its body in a kernel
// pipe: the bytes c.req.buf already holds (the length prefix, the header
// and, for Produce, the acks) stay in user space; the rest moves from the
// client socket into the pipe with splice and, once the frame is whole,
// from the pipe to the broker. No byte of it is copied through user space.
//
// The pipe's bytes are counted in the pool budget as they arrive: before
// each splice it asks the socket how much it holds and reserves chunks for
// that (so a slow frame holds the budget its bytes take, not its declared
// size, and is evicted like one held in chunks). A pipe that fills before
// the frame ends (the frame is larger than fs.pipe-max-size, or the kernel
// gave a smaller pipe, or small fragments filled its slots) is followed by
// chunks for the rest; every part is held before the first write.
//
// It reports handled false, having read nothing, when no pipe is to be had
// (maxPipesOpen reached, or out of fds): forward stores the frame in chunks.
func (c *conn) forwardPiped(h framing.RequestHeader, total int, expect bool, deadline time.Time) (handled, ok bool) {
	api := framing.APIName(h.APIKey)
	p, handled, ok := c.takePipe(total-c.req.buf.buffered(), c.s.opts.pipeLimit, deadline, api)
	if p == nil {
		return handled, ok
	}
	remaining := total - c.req.buf.buffered()
	sp := &c.req.splice
	pool := c.s.opts.Pool
	reserved := 0 // chunks reserved for the pipe's bytes
	defer func() {
		pool.Unreserve(reserved)
		c.s.pipes.put(p) // closed unless it was emptied
	}()
	chunk := pool.ChunkBytes()
	c.setReadDeadline(deadline)
	for remaining > 0 && p.held < p.size {
		room := min(reserved*chunk, p.size) - p.held
		moved, want, err := sp.spliceIn(p, min(remaining, p.size-p.held), room)
		remaining -= moved
		c.in.Add(int64(moved))
		switch {
		case err == errPipeFull:
		case err != nil:
			c.readFailed(err, reasonFrameTimeout, api)
			return true, false
		case moved == 0 && want > room:
			k, ok := c.reserveStep(room, want, api, true)
			reserved += k
			if !ok {
				return true, false
			}
			continue
		default:
			continue
		}
		break
	}
	// What the pipe could not take goes into chunks, after it.
	c.req.segments = append(c.req.segments[:0], c.req.buf.unread())
	for remaining > 0 {
		next, ok := c.getChunk()
		if !ok {
			return true, false
		}
		c.req.more = append(c.req.more, next)
		filled := 0
		for filled < len(next) && remaining > 0 {
			n, err := c.client.Read(next[filled:min(len(next), filled+remaining)])
			filled += n
			remaining -= n
			c.in.Add(int64(n))
			if err != nil && remaining > 0 {
				c.readFailed(err, reasonFrameTimeout, api)
				return true, false
			}
		}
		c.req.segments = append(c.req.segments, next[:filled])
	}

	// The frame is whole: from here it waits on the broker.
	c.req.frameDone = true
	c.holdSince.Store(0)
	if !c.ensureUpstream() {
		return true, false
	}
	if expect && !c.enqueue(inflightReq{corr: h.CorrelationID, key: h.APIKey, version: h.APIVersion}) {
		c.setReason(reasonUpstreamClosed, nil)
		return true, false
	}
	if !c.writeUpstream(c.req.segments[:1]) || !c.pipeUpstream(p) {
		return true, false
	}
	if len(c.req.segments) > 1 && !c.writeUpstream(c.req.segments[1:]) {
		return true, false
	}
	c.req.buf.r, c.req.buf.w = 0, 0 // every buffered byte was this frame's
	c.putChunks()
	c.s.metrics.forward(h.APIKey, total)
	return true, true
}

// takePipe readies a frame larger than a chunk to go through a pipe: the
// connection's splice state, a pipe of at least n bytes' capacity as the
// kernel allows (limit, when set, caps it), and the frame's first chunk
// filled (it is held, and counted, whole anyway; the pipe's bytes come on
// top of it, as the chunk path's do). With no pipe, it returns nil and
// handled false, having read nothing: the frame takes the chunk path. A
// fill that fails returns nil, handled true and ok false.
func (c *conn) takePipe(n, limit int, deadline time.Time, api string) (p *pipe, handled, ok bool) {
	if c.req.splice.init(c.client.(*net.TCPConn)) != nil {
		return nil, false, false
	}
	if p = c.s.pipes.take(n, limit); p == nil {
		return nil, false, false
	}
	if !c.fillReq(len(c.req.buf.chunk), deadline, reasonFrameTimeout, api) {
		c.s.pipes.put(p)
		return nil, true, false
	}
	return p, true, true
}

// pipeUpstream writes what p holds to the broker within WriteTimeout:
// spliced to a plain socket, copied through a chunk to anything else.
func (c *conn) pipeUpstream(p *pipe) bool {
	c.upstream.SetWriteDeadline(time.Now().Add(c.s.live().WriteTimeout))
	var err error
	if tc, ok := c.upstream.(*net.TCPConn); ok {
		err = c.req.splice.spliceOut(tc, p)
	} else {
		scratch, ok := c.getChunk()
		if !ok {
			return false
		}
		err = drainTo(c.upstream, p, scratch)
		c.s.opts.Pool.Put(scratch)
	}
	if err != nil {
		if c.setReason(reasonUpstreamError, fmt.Errorf("write upstream: %w", err)) {
			c.s.metrics.upstreamClose(reasonUpstreamError)
		}
		return false
	}
	return true
}

// cutStep bounds one step of a frame cut through a pipe: what moves in
// one splice from the client and one to the broker, and so what the pool
// reserves for it at once (8 chunks of the default 32 KiB).
const cutStep = 256 << 10

// forwardCutPiped forwards a frame larger than CutThroughBytes as it
// arrives, as forward's chunk loop does, but moves its body through a
// kernel pipe: the first chunk (the length prefix, the header and, for
// Produce, the acks) is filled and written through send, then the rest
// moves from the client socket into the pipe and at once from the pipe to
// the broker, one splice in and one out for what the socket holds (at most
// cutStep), so no byte of the body passes through user space. The pipe
// holds only the bytes of the step under way: the first chunk, free once
// written, counts for a chunk of them, and chunks for more are reserved
// before they move, only while the pool has them at once, and given back
// once they have left. So a frame cut through never waits on the pool
// past its first chunk and holds only that while it waits for its client,
// as one cut through in chunks does. A step the pipe cannot take (the
// socket's next bytes are not spliceable), and the whole body when the
// broker dialled for the frame speaks TLS, go through the first chunk.
//
// It reports handled false, having read nothing, when
// no pipe is to be had: forward cuts the frame through in chunks.
func (c *conn) forwardCutPiped(h framing.RequestHeader, total int, deadline time.Time, send func([][]byte) bool) (handled, ok bool) {
	step := cutStep
	if c.s.opts.pipeLimit > 0 { // tests: steps smaller than what the socket holds
		step = min(step, c.s.opts.pipeLimit)
	}
	api := framing.APIName(h.APIKey)
	p, handled, ok := c.takePipe(min(total-c.req.buf.buffered(), step), 0, deadline, api)
	if p == nil {
		return handled, ok
	}
	step = min(step, p.size)
	sp := &c.req.splice
	pool := c.s.opts.Pool
	reserved := 0 // chunks reserved for the step under way
	defer func() {
		pool.Unreserve(reserved)
		c.s.pipes.put(p) // closed unless it was emptied
	}()
	remaining := total - c.req.buf.buffered()
	c.req.segments = append(c.req.segments[:0], c.req.buf.unread())
	if !send(c.req.segments) {
		return true, false
	}
	c.req.buf.r, c.req.buf.w = 0, 0 // every buffered byte was this frame's
	// From here the first chunk is free. It is the first chunk's worth of
	// every step's room, so a frame cut through takes nothing more from
	// the pool while the pool has nothing to spare, and it carries what
	// the pipe cannot.
	scratch := c.req.buf.chunk
	if _, ok := c.upstream.(*net.TCPConn); !ok {
		// The broker dialled for this frame speaks TLS: nothing splices
		// to it, so the rest goes through the first chunk.
		for remaining > 0 {
			if !c.cutThroughChunk(scratch, &remaining, api, send) {
				return true, false
			}
		}
		c.s.metrics.forward(h.APIKey, total)
		return true, true
	}
	chunk := pool.ChunkBytes()
	limit := step // what the next step may move: less while the pool is short
	for remaining > 0 {
		c.setReadDeadline(c.req.cutDeadline)
		room := min(chunk+reserved*chunk, step)
		moved, want, err := sp.spliceIn(p, min(remaining, limit), room)
		remaining -= moved
		c.in.Add(int64(moved))
		switch {
		case err == errPipeFull:
			// The empty pipe took nothing the socket holds: this step
			// goes through the first chunk instead, holding nothing more
			// while it waits for the client.
			pool.Unreserve(reserved)
			reserved, limit = 0, step
			if !c.cutThroughChunk(scratch, &remaining, api, send) {
				return true, false
			}
			continue
		case err != nil:
			c.readFailed(err, reasonFrameTimeout, api)
			return true, false
		case moved == 0 && want > room:
			// More than the first chunk holds: as many chunks more as the
			// pool has at once, never waiting for them.
			k, _ := c.reserveStep(room, want, api, false)
			reserved += k
			limit = min(step, chunk+reserved*chunk)
			continue
		}
		if remaining == 0 {
			// The last bytes: from here the frame waits on the broker.
			c.req.frameDone = true
			c.holdSince.Store(0)
			if !c.pipeUpstream(p) {
				return true, false
			}
			break
		}
		// Waiting on the broker, not the client: not a slow frame to
		// evict meanwhile, its age shifted by the time the broker took.
		held, sent := c.holdSince.Swap(0), time.Now()
		if !c.pipeUpstream(p) {
			return true, false
		}
		c.brokerTook(held, time.Since(sent))
		pool.Unreserve(reserved)
		reserved, limit = 0, step
	}
	c.s.metrics.forward(h.APIKey, total)
	return true, true
}

// cutThroughChunk reads the frame's next bytes into scratch, the frame's
// first chunk, until it is full or the frame ends, and sends them on: the
// way of a frame cut through for what the pipe cannot take.
func (c *conn) cutThroughChunk(scratch []byte, remaining *int, api string, send func([][]byte) bool) bool {
	c.setReadDeadline(c.req.cutDeadline)
	filled, want := 0, min(len(scratch), *remaining)
	for filled < want {
		n, err := c.client.Read(scratch[filled:want])
		filled += n
		c.in.Add(int64(n))
		if err != nil && filled < want {
			c.readFailed(err, reasonFrameTimeout, api)
			return false
		}
	}
	if *remaining -= filled; *remaining == 0 {
		c.req.frameDone = true // sent, the frame waits on the broker
	}
	c.req.segments = append(c.req.segments[:0], scratch[:filled])
	return send(c.req.segments)
}

// reserveStep reserves chunks of the pool, one at a time, until room
// bytes cover want, for bytes about to move into a pipe, and returns how
// many it reserved. One at a time, as a frame takes chunks: a reservation
// of several would queue behind other connections' (see
// limits.Pool.Reserve). Each is waited for (evicting slow frames, as a
// chunk request does) when all, else only the first while room is empty:
// the rest are taken only while the pool has them at once. It reports
// false, having counted the pool spent, when one it waited for was not had.
func (c *conn) reserveStep(room, want int, api string, all bool) (int, bool) {
	pool := c.s.opts.Pool
	chunk := pool.ChunkBytes()
	reserved := 0
	for ; room < want; room += chunk {
		if !all && room > 0 {
			k, err := pool.Reserve(int64(chunk), 0, nil)
			if err != nil {
				break
			}
			reserved += k
			continue
		}
		k, err := c.reserveBytes(int64(chunk))
		if err != nil {
			c.poolSpent(api, err)
			return reserved, false
		}
		reserved += k
	}
	return reserved, true
}
