package proxy

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
)

// ensureUpstream dials the broker on the first request that is about to be
// written to it, so a connection that never completes a valid frame never
// reaches the broker at all.
func (c *conn) ensureUpstream() bool {
	if c.upstream != nil {
		return true
	}
	if err := c.dial(); err != nil {
		c.setReason(reasonDialFailed, err)
		// Reset, not a clean close: a client reading EOF right after a
		// request may take it for a broker demanding SASL and fail its
		// records (franz-go does), where a reset is retried like the
		// connection refused it would have seen from the broker itself.
		if tc, ok := c.raw().(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		if ok, n := c.s.warnLog.allow(); ok {
			c.log.Warn().Err(err).Int("suppressed", n).Msg("upstream dial failed")
		}
		return false
	}
	return true
}

// forward sends one allowed request upstream. Frames up to CutThroughBytes
// (all of them by default) are stored whole before the broker sees their
// length prefix; larger ones, while CutThroughBudget has room for their
// declared size, are written as they arrive (on Linux their bodies through
// a kernel pipe, else chunk by chunk), and stored whole when it has not.
// The upstream is dialled, and the request queued for its response, only
// once the frame is whole (or, cut through, its first chunk is full).
func (c *conn) forward(h framing.RequestHeader, size int32, start time.Time) bool {
	deadline := start.Add(c.s.live().FrameTimeout)
	api := framing.APIName(h.APIKey)
	total := 4 + int(size)
	cut := c.s.opts.CutThroughBytes
	// A frame cut through makes the broker wait for its declared size:
	// within the budget it may, else it is stored whole. One that fits a
	// chunk is never cut (config asks cut_through_bytes >= a chunk; tests
	// may set less).
	cutThrough := false
	if cut > 0 && size > cut && total > len(c.req.buf.chunk) {
		if cutThrough = c.s.oweCut(int64(total)); cutThrough {
			defer c.s.payCut(int64(total))
			c.s.metrics.cutFrame()
		} else {
			c.s.metrics.overCutBudget()
		}
	}
	expect := true
	if h.APIKey == framing.KeyProduce { // Produce with acks=0 gets no response
		acks, ok := c.peekAcks(h, total, deadline)
		if !ok {
			return false
		}
		expect = acks != 0
	}
	queued := false
	send := func(bufs [][]byte) bool {
		// What is read is now waiting on the broker (a dial, a free
		// in-flight slot, a slow write), not on the client: backpressure,
		// bounded by the dial and write timeouts, never a slow frame to
		// evict. A cut-through frame still waiting for the client's bytes
		// becomes evictable again after the send, its age shifted by the
		// time the broker took.
		// The read deadline of a frame cut through moves on by the
		// broker's part only: the dial and the write. A wait for a free
		// in-flight slot is the client's as much as the broker's (a slot
		// frees when the client has read a response), so it is not.
		held := c.holdSince.Swap(0)
		var broker time.Duration
		defer func() {
			if !c.req.frameDone {
				c.brokerTook(held, broker)
			}
		}()
		if !queued {
			t := time.Now()
			if !c.ensureUpstream() {
				return false
			}
			broker += time.Since(t)
			if expect && !c.enqueue(inflightReq{corr: h.CorrelationID, key: h.APIKey, version: h.APIVersion}) {
				c.setReason(reasonUpstreamClosed, nil)
				return false
			}
			queued = true
		}
		t := time.Now()
		ok := c.writeUpstream(bufs)
		broker += time.Since(t)
		return ok
	}
	// sendLast sends the last segments of a frame larger than a chunk,
	// c.req.segments (the whole frame when stored whole), and gives its
	// chunks back.
	sendLast := func() bool {
		c.req.frameDone = true
		if !send(c.req.segments) {
			return false
		}
		c.req.buf.r, c.req.buf.w = 0, 0 // every buffered byte was this frame's
		c.putChunks()
		c.s.metrics.forward(h.APIKey, total)
		return true
	}

	c.req.frameDone, c.req.cutDeadline = false, deadline
	if total <= len(c.req.buf.chunk) {
		// The frame fits the chunk: complete it there and send it in one write.
		if !c.fillReq(total, deadline, reasonFrameTimeout, api) {
			return false
		}
		c.req.frameDone = true
		c.req.segments = append(c.req.segments[:0], c.req.buf.unread()[:total])
		if !send(c.req.segments) {
			return false
		}
		c.req.buf.consume(total)
		c.s.metrics.forward(h.APIKey, total)
		return true
	}

	// Larger than a chunk: on Linux its body goes through a kernel pipe
	// instead of chunks, when one is to be had, stored whole or cut through.
	if c.spliceableTCP() {
		if cutThrough {
			if handled, ok := c.forwardCutPiped(h, total, deadline, send); handled {
				return ok
			}
		} else if handled, ok := c.forwardPiped(h, total, expect, deadline); handled {
			return ok
		}
	}
	// Or, on Linux, read into as many chunks at once as the socket holds
	// bytes for, when the readv store path is chosen.
	if !cutThrough && c.readvTCP() {
		return c.storeReadv(total, deadline, api) && sendLast()
	}

	// Larger than a chunk: everything buffered belongs to this frame. Fill
	// the chunk to its end, then further chunks, reading only the frame.
	remaining := total - c.req.buf.buffered()
	segStart, cur, filled := c.req.buf.r, c.req.buf.chunk, c.req.buf.w
	c.req.segments = c.req.segments[:0]
	for remaining > 0 {
		if filled == len(cur) {
			c.req.segments = append(c.req.segments, cur[segStart:filled])
			if cutThrough {
				if !send(c.req.segments) {
					return false
				}
				c.req.segments = c.req.segments[:0]
			} else {
				next, ok := c.getChunk()
				if !ok {
					return false
				}
				c.req.more = append(c.req.more, next)
				cur = next
			}
			segStart, filled = 0, 0
		}
		c.setReadDeadline(c.req.cutDeadline) // the frame's deadline unless cut through
		n, err := c.client.Read(cur[filled:min(len(cur), filled+remaining)])
		filled += n
		remaining -= n
		c.in.Add(int64(n))
		if err != nil && remaining > 0 {
			c.readFailed(err, reasonFrameTimeout, api)
			return false
		}
	}
	c.req.segments = append(c.req.segments, cur[segStart:filled])
	return sendLast()
}

// brokerTook moves a frame cut through on by d, time spent waiting on the
// broker before the frame's last byte came: its age for eviction (held,
// the holdSince it had; 0: not evictable) and its read deadline. The
// client is charged only for the time it takes itself.
func (c *conn) brokerTook(held int64, d time.Duration) {
	c.req.cutDeadline = c.req.cutDeadline.Add(d)
	if held != 0 {
		c.holdSince.Store(held + d.Nanoseconds())
	}
}

// peekAcks reads until the acks field of a Produce frame is in c.req.buf and
// returns it. It must lie within the first chunk.
func (c *conn) peekAcks(h framing.RequestHeader, total int, deadline time.Time) (int16, bool) {
	limit := min(total, len(c.req.buf.chunk))
	for {
		avail := min(c.req.buf.buffered(), total)
		acks, ok, err := framing.PeekProduceAcks(c.req.buf.unread()[4+h.Len:avail], h.APIVersion)
		switch {
		case err != nil:
			c.refuse(reasonMalformedBody, "Produce", err)
			return 0, false
		case ok:
			return acks, true
		case avail == limit:
			c.refuse(reasonMalformedBody, "Produce",
				errors.New("produce acks not within the first chunk (transactional id longer than pool.chunk_bytes?)"))
			return 0, false
		}
		if !c.fillReq(avail+1, deadline, reasonFrameTimeout, "Produce") {
			return 0, false
		}
	}
}

// writeUpstream writes bufs, the frame's segments, in one writev, which
// must complete within WriteTimeout: one deadline for the whole write,
// unlike writeClient's steps, as a request is bounded by the Policy (and a
// frame cut through is written a chunk at a time). A broker that does not
// take it in time ends the connection (upstream_error).
func (c *conn) writeUpstream(bufs [][]byte) bool {
	c.upstream.SetWriteDeadline(time.Now().Add(c.s.live().WriteTimeout))
	var err error
	if len(bufs) == 1 {
		_, err = c.upstream.Write(bufs[0])
	} else {
		c.req.writev = bufs
		_, err = c.req.writev.WriteTo(c.upstream)
	}
	if err != nil {
		if c.setReason(reasonUpstreamError, fmt.Errorf("write upstream: %w", err)) {
			c.s.metrics.upstreamClose(reasonUpstreamError)
		}
		return false
	}
	return true
}
