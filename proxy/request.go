package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
	"github.com/kafkaguard/kafkaguard/limits"
)

// Close reasons that are not offences.
const (
	reasonClientClosed   = "client_closed"
	reasonIdle           = "idle_timeout"
	reasonShutdown       = "shutdown"
	reasonTruncated      = "truncated"
	reasonClientError    = "client_error"
	reasonUpstreamError  = "upstream_error"
	reasonDialFailed     = "dial_failed"
	reasonPoolExhausted  = "pool_exhausted"
	reasonUpstreamClosed = "upstream_closed"
	reasonBanned         = "banned"
)

// Offence reasons: the client sent something a Kafka client never sends.
const (
	reasonBadSize        = "bad_size"
	reasonNotKafka       = "not_kafka"
	reasonTLS            = "tls_on_plaintext"
	reasonHeaderTimeout  = "header_timeout"
	reasonFrameTimeout   = "frame_timeout"
	reasonSlowFrame      = "slow_frame"
	reasonAnswerTooLarge = "answer_too_large"
	reasonBadResponse    = "bad_response"
	reasonMalformed      = "malformed_header"
	reasonMalformedBody  = "malformed_produce"
	reasonClientIDTooBig = string(limits.ReasonClientIDTooLong)
	reasonTooLarge       = string(limits.ReasonTooLarge)
	apiNone              = "none"
)

var errNotKafka = errors.New("not the Kafka protocol")

// requestLoop is the client->broker pump. It returns true when the client
// ended cleanly between frames (or the server is draining), false when the
// connection must be torn down at once.
func (c *conn) requestLoop() (clean bool) {
	defer c.releaseReq()
	for {
		if !c.awaitAnswers() {
			reason, _ := c.closeReason()
			return reason == reasonShutdown
		}
		size, start, ok := c.readSize()
		if !ok || !c.frame(size, start) {
			// Ends that still owe the client its responses: its own end
			// of stream, a drain, or a ban earned by a request answered
			// locally.
			reason, _ := c.closeReason()
			return reason == reasonClientClosed || reason == reasonShutdown || reason == reasonBanned
		}
		c.holdSince.Store(0)
		c.frameBusy.Store(false)
		c.frames++
	}
}

// Request bytes are read into one pooled chunk, c.qbuf, as many as the
// socket has (up to the chunk), so a small frame usually costs one read and
// pipelined frames share reads; what is read past a frame is carried over
// to the next (c.qbuf[c.qr:c.qw]). With nothing carried, the wait for a
// next frame reads into the connection's small lead buffer instead, so an
// idle connection holds no chunk.

// readSize waits up to the idle timeout for the first byte of a frame (when
// none is carried over), then up to the header timeout for the rest of the
// length prefix.
func (c *conn) readSize() (int32, time.Time, bool) {
	if c.qr == c.qw {
		c.releaseReq()
		c.setReadDeadline(time.Now().Add(c.s.opts.IdleTimeout))
		if c.s.draining.Load() {
			c.setReason(reasonShutdown, nil)
			return 0, time.Time{}, false
		}
		n, err := c.client.Read(c.lead[:])
		if n == 0 {
			timeout, eof := classifyIO(err)
			switch {
			case timeout && c.s.draining.Load():
				c.setReason(reasonShutdown, nil)
			case timeout:
				c.setReason(reasonIdle, nil)
			case eof:
				c.setReason(reasonClientClosed, nil)
			default:
				c.setReason(reasonClientError, err)
			}
			return 0, time.Time{}, false
		}
		c.frameBusy.Store(true)
		c.in.Add(int64(n))
		chunk, ok := c.getChunk()
		if !ok {
			return 0, time.Time{}, false
		}
		c.qbuf, c.qr, c.qw = chunk, 0, copy(chunk, c.lead[:n])
	} else {
		c.frameBusy.Store(true)
	}
	start := time.Now()
	c.holdSince.Store(start.UnixNano())
	if !c.fillReq(4, start.Add(c.s.opts.HeaderTimeout), reasonHeaderTimeout, apiNone) {
		return 0, start, false
	}
	var first [4]byte
	copy(first[:], c.qbuf[c.qr:])
	if c.frames == 0 {
		switch framing.Sniff(first) {
		case framing.ProtoHTTP:
			c.offence(reasonNotKafka, apiNone, c.s.opts.Weights.Closed,
				fmt.Errorf("%w: first bytes %q look like an HTTP request", errNotKafka, first[:]))
			return 0, start, false
		case framing.ProtoTLS:
			c.offence(reasonTLS, apiNone, c.s.opts.Weights.Closed,
				fmt.Errorf("%w: first bytes look like a TLS ClientHello: the client is configured for TLS (security.protocol=SSL) on a plaintext listener", errNotKafka))
			return 0, start, false
		}
	}
	return int32(binary.BigEndian.Uint32(first[:])), start, true
}

// fillReq reads until c.qbuf holds at least n unread bytes (n <= chunk
// size), reading as much as the socket has, with deadline for any read it
// must wait for. A timeout is the offence timeoutReason.
func (c *conn) fillReq(n int, deadline time.Time, timeoutReason, api string) bool {
	if c.qw-c.qr >= n {
		return true
	}
	if c.qr+n > len(c.qbuf) {
		c.qw = copy(c.qbuf, c.qbuf[c.qr:c.qw])
		c.qr = 0
	}
	c.setReadDeadline(deadline)
	got, err := io.ReadAtLeast(c.client, c.qbuf[c.qw:], n-(c.qw-c.qr))
	c.qw += got
	c.in.Add(int64(got))
	if err != nil {
		c.readFailed(err, timeoutReason, api)
		return false
	}
	return true
}

// setReadDeadline sets the client's read deadline when it changes.
func (c *conn) setReadDeadline(t time.Time) {
	if !t.Equal(c.rdl) {
		c.client.SetReadDeadline(t)
		c.rdl = t
	}
}

// releaseReq returns the request chunks to the pool.
func (c *conn) releaseReq() {
	if c.qbuf != nil {
		c.s.opts.Pool.Put(c.qbuf)
		c.qbuf, c.qr, c.qw = nil, 0, 0
	}
	c.putChunks()
}

// readFailed records why a read inside a frame failed: a timeout is the
// given offence, an end of stream a truncated frame.
func (c *conn) readFailed(err error, timeoutReason, api string) {
	timeout, eof := classifyIO(err)
	switch {
	case timeout:
		c.offence(timeoutReason, api, c.s.opts.Weights.Closed, err)
	case eof:
		c.setReason(reasonTruncated, err)
	default:
		c.setReason(reasonClientError, err)
	}
}

// frame handles one request whose length prefix is at c.qbuf[c.qr:]. It
// returns false when the connection must close.
func (c *conn) frame(size int32, start time.Time) bool {
	pol := c.s.opts.Policy
	if err := framing.CheckSize(size, pol.MaxLimit()); err != nil {
		if !errors.Is(err, framing.ErrFrameTooLarge) {
			c.offence(reasonBadSize, apiNone, c.s.opts.Weights.Closed, err)
			return false
		}
		if !pol.Drainable(size) {
			// Too large to be worth reading even to answer it: close now,
			// before a single byte more is read.
			c.offence(reasonTooLarge, apiNone, c.s.opts.Weights.Closed, err)
			return false
		}
	}
	h, ok := c.readHeader(size, start)
	if !ok {
		return false
	}
	if h.ClientID != nil && string(h.ClientID) != c.clientID {
		c.clientID = string(h.ClientID)
	}
	api := framing.APIName(h.APIKey)
	action, why := pol.Check(h, size)
	switch action {
	case limits.Close:
		c.offence(string(why), api, c.s.opts.Weights.Closed,
			fmt.Errorf("%s v%d, %d bytes (limit %d)", api, h.APIVersion, size, pol.Limit(h.APIKey)))
		return false
	case limits.Reject:
		return c.reject(h, size, start)
	}
	return c.forward(h, size, start)
}

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
		if tc, ok := c.client.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		if ok, n := c.s.warnLog.allow(); ok {
			c.log.Warn().Err(err).Int("suppressed", n).Msg("upstream dial failed")
		}
		return false
	}
	return true
}

// readHeader reads until the request header at c.qbuf[c.qr+4:] parses.
func (c *conn) readHeader(size int32, start time.Time) (framing.RequestHeader, bool) {
	total := 4 + int(size)
	limit := min(total, len(c.qbuf))
	for {
		avail := min(c.qw-c.qr, total)
		h, perr := framing.ParseRequestHeader(c.qbuf[c.qr+4:c.qr+avail], size, c.s.opts.Policy.MaxClientIDBytes())
		if perr == nil {
			return h, true
		}
		if !errors.Is(perr, framing.ErrIncomplete) {
			reason := reasonMalformed
			switch {
			case errors.Is(perr, framing.ErrClientIDTooLong):
				reason = reasonClientIDTooBig
			case avail >= 8 && badVersion(h.APIKey, h.APIVersion):
				// A version kafkaguard does not know may also change the
				// header's shape; name the version, not the symptom.
				reason = string(limits.ReasonBadVersion)
			}
			c.offence(reason, framing.APIName(h.APIKey), c.s.opts.Weights.Closed, perr)
			return h, false
		}
		if avail == limit {
			c.offence(reasonMalformed, apiNone, c.s.opts.Weights.Closed,
				fmt.Errorf("%w: header longer than %d bytes", framing.ErrMalformedHeader, limit-4))
			return h, false
		}
		if !c.fillReq(avail+1, start.Add(c.s.opts.HeaderTimeout), reasonHeaderTimeout, apiNone) {
			return h, false
		}
	}
}

// getChunk takes a chunk from the pool, waiting at most PoolWait. When the
// pool is spent it evicts, one at a time, the connections whose unfinished
// frames (still waiting for client bytes; a frame waiting on the broker is
// not one) have held chunks longest (at once for a frame a second old, else
// after 200 ms of waiting): a few hundred slow clients declaring frames just
// under the limit would otherwise hold the whole pool and starve everyone.
func (c *conn) getChunk() ([]byte, bool) {
	chunk, err := c.takeChunk()
	if err != nil {
		if c.setReason(reasonPoolExhausted, err) {
			c.s.metrics.reject(reasonPoolExhausted, apiNone)
			c.warn(reasonPoolExhausted, apiNone, err)
		}
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
	if !c.setReason(reasonSlowFrame, err) {
		return
	}
	c.s.metrics.reject(reasonSlowFrame, apiNone)
	if ok, n := c.s.warnLog.allow(); ok {
		c.log.Warn().Str("reason", reasonSlowFrame).Err(err).Int("suppressed", n).Msg("refused client request")
	}
	if g := c.s.opts.Gate; g != nil && c.ip.IsValid() && c.s.opts.Weights.Closed > 0 {
		g.Offence(c.ip, "", reasonSlowFrame, c.s.opts.Weights.Closed)
	}
	c.client.Close()
}

func (c *conn) putChunks() {
	for i, ch := range c.chunks {
		c.s.opts.Pool.Put(ch)
		c.chunks[i] = nil
	}
	c.chunks = c.chunks[:0]
}

// forward sends one allowed request upstream. Frames up to CutThroughBytes
// (all of them by default) are stored whole before the broker sees their
// length prefix; larger ones are written chunk by chunk as they arrive. The
// upstream is dialled, and the request queued for its response, only once
// the frame is whole (or, cut through, its first chunk is full).
func (c *conn) forward(h framing.RequestHeader, size int32, start time.Time) bool {
	deadline := start.Add(c.s.opts.FrameTimeout)
	api := framing.APIName(h.APIKey)
	total := 4 + int(size)
	cut := c.s.opts.CutThroughBytes
	cutThrough := cut > 0 && size > cut
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
		held, sent := c.holdSince.Swap(0), time.Now()
		defer func() {
			if held != 0 && !c.frameDone {
				c.holdSince.Store(held + time.Since(sent).Nanoseconds())
			}
		}()
		if !queued {
			if !c.ensureUpstream() {
				return false
			}
			if expect && !c.enqueue(pending{corr: h.CorrelationID, key: h.APIKey, version: h.APIVersion}) {
				c.setReason(reasonUpstreamClosed, nil)
				return false
			}
			queued = true
		}
		return c.writeUpstream(bufs)
	}

	c.frameDone = false
	if total <= len(c.qbuf) {
		// The frame fits the chunk: complete it there and send it in one write.
		if !c.fillReq(total, deadline, reasonFrameTimeout, api) {
			return false
		}
		c.frameDone = true
		c.bufs = append(c.bufs[:0], c.qbuf[c.qr:c.qr+total])
		if !send(c.bufs) {
			return false
		}
		c.qr += total
		c.s.metrics.forward(h.APIKey, total)
		return true
	}

	// Larger than a chunk: everything buffered belongs to this frame. Fill
	// the chunk to its end, then further chunks, reading only the frame.
	remaining := total - (c.qw - c.qr)
	segStart, cur, filled := c.qr, c.qbuf, c.qw
	c.bufs = c.bufs[:0]
	for remaining > 0 {
		if filled == len(cur) {
			c.bufs = append(c.bufs, cur[segStart:filled])
			if cutThrough {
				if !send(c.bufs) {
					return false
				}
				c.bufs = c.bufs[:0]
			} else {
				next, ok := c.getChunk()
				if !ok {
					return false
				}
				c.chunks = append(c.chunks, next)
				cur = next
			}
			segStart, filled = 0, 0
		}
		c.setReadDeadline(deadline)
		n, err := c.client.Read(cur[filled:min(len(cur), filled+remaining)])
		filled += n
		remaining -= n
		c.in.Add(int64(n))
		if err != nil && remaining > 0 {
			c.readFailed(err, reasonFrameTimeout, api)
			return false
		}
	}
	c.bufs = append(c.bufs, cur[segStart:filled])
	c.frameDone = true
	if !send(c.bufs) {
		return false
	}
	c.qr, c.qw = 0, 0 // every buffered byte was this frame's
	c.putChunks()
	c.s.metrics.forward(h.APIKey, total)
	return true
}

// peekAcks reads until the acks field of a Produce frame is in c.qbuf and
// returns it. It must lie within the first chunk.
func (c *conn) peekAcks(h framing.RequestHeader, total int, deadline time.Time) (int16, bool) {
	limit := min(total, len(c.qbuf))
	for {
		avail := min(c.qw-c.qr, total)
		acks, ok, err := framing.PeekProduceAcks(c.qbuf[c.qr+4+h.Len:c.qr+avail], h.APIVersion)
		switch {
		case err != nil:
			c.offence(reasonMalformedBody, "Produce", c.s.opts.Weights.Closed, err)
			return 0, false
		case ok:
			return acks, true
		case avail == limit:
			c.offence(reasonMalformedBody, "Produce", c.s.opts.Weights.Closed,
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
	c.upstream.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	var err error
	if len(bufs) == 1 {
		_, err = c.upstream.Write(bufs[0])
	} else {
		c.wbufs = bufs
		_, err = c.wbufs.WriteTo(c.upstream)
	}
	if err != nil {
		if c.setReason(reasonUpstreamError, fmt.Errorf("write upstream: %w", err)) {
			c.s.metrics.upstreamClose(reasonUpstreamError)
		}
		return false
	}
	return true
}

// offence records a refused frame or connection: the metric, a rate-limited
// warning, the close reason, and the offence against the client's address.
func (c *conn) offence(reason, api string, weight float64, err error) {
	if !c.setReason(reason, err) {
		return // already ending (evicted, shut down): counted once, there
	}
	c.s.metrics.reject(reason, api)
	c.warn(reason, api, err)
	if g := c.s.opts.Gate; g != nil && c.ip.IsValid() && weight > 0 {
		g.Offence(c.ip, c.clientID, reason, weight)
	}
}

func (c *conn) warn(reason, api string, err error) {
	if ok, n := c.s.warnLog.allow(); ok {
		c.log.Warn().Str("reason", reason).Str("api", api).Str("client_id", c.clientID).
			Err(err).Int("suppressed", n).Msg("refused client request")
	}
}

// badVersion reports a known API key at a version kafkaguard does not
// serve (see framing.ServesVersion).
func badVersion(key, version int16) bool {
	known, served := framing.ServesVersion(key, version)
	return known && !served
}
