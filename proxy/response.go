package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
)

var (
	errCorrelation   = errors.New("response correlation id does not match the oldest request")
	errResponseSize  = errors.New("response size smaller than its header")
	errRewriteTooBig = errors.New("response to rewrite larger than proxy.max_rewrite_bytes")
	errSlowClient    = errors.New("client did not take the next step of the response (up to 256 KiB) within timeouts.write")
)

// responseLoop is the broker->client pump. Responses come back in request
// order; each pending entry either names the upstream response to relay or
// carries a local response to write in its turn.
//
// Upstream bytes are read into one pooled chunk as they come, several
// responses at a time when the broker has sent several. The chunk is taken
// when the broker's first bytes arrive and returned once nothing read is
// left over, so a connection waiting on the broker (a consumer's long poll)
// or idle holds none.
//
// The pump runs only while responses are owed (see inflight): its goroutine
// ends after pumpLinger with nothing owed, and the next request starts it
// again. On failure it closes both sockets and refuses further requests.
func (c *conn) responseLoop() {
	q := &c.inflight
	defer q.wg.Done()
	var timer *time.Timer
	for {
		p, ok := q.next(&timer)
		if !ok {
			return
		}
		if p.local != nil {
			ok = c.writeAnswer(p.local)
		} else {
			ok = c.relayNext(p)
			if c.resp.buf.buffered() == 0 {
				c.resp.buf.release(c.s.opts.Pool)
			}
		}
		<-q.slots
		if !ok {
			q.failNow()
			return
		}
	}
}

// relayNext relays the upstream response to p. The broker has until p.due
// to send it (timeouts.request from when it was queued): the oldest owed
// response is always the one being read, so a hung broker closes the
// connection as request_timeout instead of pinning it for ever.
//
// A pump that reaches p only after p.due (it spent the time writing earlier
// responses to a slow client, and the broker, unread, could not send) gives
// the broker lateGrace (at most RequestTimeout) more: a response already in
// the socket is read, not judged late, and a hung broker is still cut.
func (c *conn) relayNext(p inflightReq) bool {
	c.resp.key = p.key
	if done, ok := c.relayBuffered(p); done {
		return ok
	}
	c.upstreamDeadline(later(p.due, time.Now().Add(min(lateGrace, c.s.live().RequestTimeout))))
	if p.saslExchange() {
		if done, ok := c.saslResponse(p); done {
			return ok
		}
	}
	if c.resp.buf.chunk == nil {
		// Wait for the broker without holding a chunk: a consumer's long
		// poll would otherwise hold one for as long as the broker waits.
		n, err := c.upstream.Read(c.resp.lead[:])
		if n == 0 {
			c.upstreamFailed(err)
			return false
		}
		if done, ok := c.relayFromLead(p, n); done {
			return ok
		}
		chunk, err := c.takeChunk()
		if err != nil {
			c.poolSpent(apiNone, err)
			c.client.Close()
			return false
		}
		c.resp.buf.take(chunk, copy(chunk, c.resp.lead[:n]))
	}
	if !c.fillResp(8) {
		return false
	}
	head := c.resp.buf.unread()
	size := int32(binary.BigEndian.Uint32(head))
	corr := int32(binary.BigEndian.Uint32(head[4:]))
	if size < 4 {
		c.responseFailed(fmt.Errorf("%w: %d", errResponseSize, size))
		return false
	}
	if corr != p.corr {
		c.responseFailed(fmt.Errorf("%w: got %d, want %d (%s)", errCorrelation, corr, p.corr, framing.APIName(p.key)))
		return false
	}
	total := 4 + int(size)
	switch {
	case c.s.rewriter.handles(p.key):
		return c.relayRewritten(p, total)
	case total <= len(c.resp.buf.chunk):
		// The common case: the whole response fits the chunk; one write.
		if !c.fillResp(total) {
			return false
		}
		ok := c.writeClient(c.resp.buf.unread()[:total])
		c.resp.buf.consume(total)
		return ok
	default:
		buffered := c.resp.buf.unread() // all of it this response's: it is larger than the chunk
		c.resp.buf.consume(len(buffered))
		return c.relayLarge(buffered, total)
	}
}

// relayBuffered relays p's response when a read for an earlier one already
// brought all of it into the chunk, as it does when the broker answers
// pipelined requests in a burst: no read, so no read deadline (nor the
// clock read to compute one). The responses after it that are whole in the
// chunk too go out in the same write, one write for what took one read, as
// a byte relay would (relay them singly and the pump makes a write syscall
// per response). Only plain upstream responses are taken: a response to
// rewrite or of the SASL exchange, a local answer, or a bad header is left
// to the general path (done is false).
func (c *conn) relayBuffered(p inflightReq) (done, ok bool) {
	total, whole := c.bufferedResponse(p, 0)
	if !whole {
		return false, false
	}
	span := total
	extra := 0
	for {
		next, queued := c.inflight.peek()
		if !queued {
			break
		}
		n, whole := c.bufferedResponse(next, span)
		if !whole {
			break
		}
		c.inflight.pop()
		span += n
		extra++
	}
	ok = c.writeClient(c.resp.buf.unread()[:span])
	c.resp.buf.consume(span)
	for range extra {
		<-c.inflight.slots // the caller frees p's slot
	}
	return true, ok
}

// bufferedResponse reports whether the upstream response to p lies whole
// in the chunk at off bytes past what is unread, and its size with the
// prefix: only a plain upstream response (not local, not rewritten, not
// SASL) whose header is sane and matches p.
func (c *conn) bufferedResponse(p inflightReq, off int) (total int, whole bool) {
	if p.local != nil || p.saslExchange() || c.s.rewriter.handles(p.key) {
		return 0, false
	}
	b := c.resp.buf.unread()
	if len(b)-off < 8 {
		return 0, false
	}
	b = b[off:]
	size := int32(binary.BigEndian.Uint32(b))
	if size < 4 || int32(binary.BigEndian.Uint32(b[4:])) != p.corr {
		return 0, false
	}
	total = 4 + int(size)
	return total, total <= len(b)
}

// saslExchange reports whether p's response belongs to the SASL exchange
// (a raw v0 token, SaslHandshake, SaslAuthenticate), which saslResponse
// reads.
func (p inflightReq) saslExchange() bool {
	return p.key == keyRawToken || p.key == framing.KeySaslHandshake || p.key == framing.KeySaslAuthenticate
}

// fillResp reads from the upstream until the chunk holds at least n unread
// bytes (n <= chunk size), moving unread bytes to the front when needed.
func (c *conn) fillResp(n int) bool {
	if c.resp.buf.buffered() >= n {
		return true
	}
	if _, err := c.resp.buf.fill(c.upstream, n); err != nil {
		c.upstreamFailed(err)
		return false
	}
	return true
}

// relayFromLead relays a response larger than a chunk whose header the
// first read put in c.resp.lead[:n] without taking a chunk at all: the lead
// bytes, then the rest spliced. Anything else (a small response, one to
// rewrite, a bad header) is left to the general path (done is false).
func (c *conn) relayFromLead(p inflightReq, n int) (done, ok bool) {
	if n < 8 || c.s.rewriter.handles(p.key) {
		return false, false
	}
	size := int32(binary.BigEndian.Uint32(c.resp.lead[:]))
	corr := int32(binary.BigEndian.Uint32(c.resp.lead[4:]))
	total := 4 + int(size)
	if size < 4 || corr != p.corr || total <= c.s.opts.Pool.ChunkBytes() {
		return false, false
	}
	return true, c.relayLarge(c.resp.lead[:n], total)
}

// lateGrace is the least time the broker gets to send a response the pump
// starts reading (see relayNext).
const lateGrace = time.Second

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// spliceStep is how much of a large response is relayed under one write
// deadline, and the most writeClient writes under one: a step the client
// has not taken within WriteTimeout ends the connection (client_error), as
// does a read the broker has not answered within RequestTimeout
// (request_timeout). So the deadlines measure a lack of progress, not the
// whole response: a consumer reading a 50 MiB fetch slowly but steadily is
// served, one taking less than a step per WriteTimeout is cut.
const spliceStep = 256 << 10

// relayLarge relays a response larger than a chunk: buffered, its first
// bytes already read, then the rest: spliced between the sockets by the
// kernel through a pipe of the server's when both are plain TCP on Linux
// (relayPiped), else copied through a chunk, each read under
// RequestTimeout and each write under WriteTimeout. A read and a write
// never wait at once, so each failure is its side's.
func (c *conn) relayLarge(buffered []byte, total int) bool {
	if !c.writeClient(buffered) {
		return false
	}
	rest := int64(total - len(buffered))
	if c.spliceable() {
		if handled, ok := c.relayPiped(rest); handled {
			return ok
		}
	}
	if c.resp.buf.chunk == nil {
		chunk, err := c.takeChunk()
		if err != nil {
			c.poolSpent(apiNone, err)
			c.client.Close()
			return false
		}
		c.resp.buf.take(chunk, 0)
	}
	chunk := c.resp.buf.chunk
	for rest > 0 {
		c.upstreamDeadline(time.Now().Add(c.s.live().RequestTimeout))
		n, err := c.upstream.Read(chunk[:min(int64(len(chunk)), rest)])
		if n > 0 && !c.writeClient(chunk[:n]) {
			return false
		}
		rest -= int64(n)
		if err != nil && rest > 0 {
			c.upstreamFailed(fmt.Errorf("relay response: %w", err))
			return false
		}
	}
	return true
}

// writeClient writes b to the client in steps of at most spliceStep bytes,
// each under its own deadline of WriteTimeout, as relayPiped splices: the
// client must take min(what is left, spliceStep) bytes in every
// WriteTimeout or the connection ends (client_error). So a slow but steady
// reader of a large response is served, while one taking a segment now and
// then cannot pin the chunk, reservation or answer behind b for longer than
// about one WriteTimeout per step. A step that times out cannot be resumed
// anyway: its bytes are part-written.
func (c *conn) writeClient(b []byte) bool {
	for len(b) > 0 {
		step := b[:min(len(b), spliceStep)]
		c.client.SetWriteDeadline(time.Now().Add(c.s.live().WriteTimeout))
		n, err := c.client.Write(step)
		c.out.Add(int64(n))
		c.s.metrics.sent(n)
		b = b[n:]
		if err != nil {
			c.clientWriteFailed(fmt.Errorf("write client: %w", err))
			return false
		}
	}
	return true
}

// clientWriteFailed ends the connection after a write to the client failed
// or made no progress for WriteTimeout.
func (c *conn) clientWriteFailed(err error) {
	if timeout, _ := classifyIO(err); timeout {
		err = fmt.Errorf("%w: %w", errSlowClient, err)
	}
	c.setReason(reasonClientError, err)
	c.client.Close()
	if up := c.upstreamConn(); up != nil {
		up.Close()
	}
}

// upstreamDeadline sets the broker read deadline to t, or to the drain
// deadline serve set when that is earlier, and returns the deadline set.
// serve may set drainBy at any moment, so it is read again after the set:
// whichever of the two sets runs last, the earlier deadline holds.
func (c *conn) upstreamDeadline(t time.Time) time.Time {
	if by := c.drainBy.Load(); by != 0 && by < t.UnixNano() {
		t = time.Unix(0, by)
	}
	c.upstream.SetReadDeadline(t)
	if by := c.drainBy.Load(); by != 0 && by < t.UnixNano() {
		t = time.Unix(0, by)
		c.upstream.SetReadDeadline(t)
	}
	return t
}

// upstreamFailed ends the connection after the broker closed or failed while
// a response was owed.
// A read deadline passing means the broker owed the response (or went
// silent inside one) longer than RequestTimeout: request_timeout, unless
// the connection already ends for another reason (a drain after the
// client's end of stream).
func (c *conn) upstreamFailed(err error) {
	timeout, eof := classifyIO(err)
	r := reasonUpstreamError
	switch {
	case timeout:
		r = reasonRequestTimeout
	case eof:
		r = reasonUpstreamClosed
	}
	if c.setReason(r, err) {
		c.s.metrics.upstreamClose(r)
		if r == reasonRequestTimeout {
			if ok, n := c.s.warnLog.allow(); ok {
				c.log.Warn().Str("reason", r.String()).Str("api", framing.APIName(c.resp.key)).
					Dur("request_timeout_ms", c.s.live().RequestTimeout).Int("suppressed", n).
					Msg("broker owed a response longer than timeouts.request; closing the client's connection")
			}
		}
	}
	c.client.Close()
	c.upstream.Close()
}

func (c *conn) responseFailed(err error) {
	if c.setReason(reasonUpstreamError, err) {
		c.s.metrics.upstreamClose(reasonUpstreamError)
	}
	if ok, n := c.s.warnLog.allow(); ok {
		c.log.Warn().Err(err).Int("suppressed", n).Msg("bad upstream response")
	}
	c.client.Close()
	c.upstream.Close()
}

func isTCP(c net.Conn) bool { _, ok := c.(*net.TCPConn); return ok }
