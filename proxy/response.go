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

// reasonRequestTimeout closes a connection whose broker owed a response
// longer than Options.RequestTimeout: the broker's fault, not an offence.
const reasonRequestTimeout = "request_timeout"

var (
	errCorrelation   = errors.New("response correlation id does not match the oldest request")
	errResponseSize  = errors.New("response size smaller than its header")
	errRewriteTooBig = errors.New("response to rewrite larger than proxy.max_rewrite_bytes")
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
	q := &c.owed
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
			if c.rr == c.rw {
				c.releaseResp()
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
func (c *conn) relayNext(p pending) bool {
	c.rkey = p.key
	c.upstreamDeadline(later(p.due, time.Now().Add(min(lateGrace, c.s.opts.RequestTimeout))))
	if c.rbuf == nil {
		// Wait for the broker without holding a chunk: a consumer's long
		// poll would otherwise hold one for as long as the broker waits.
		n, err := c.upstream.Read(c.rlead[:])
		if n == 0 {
			c.upstreamFailed(err)
			return false
		}
		if done, ok := c.relayFromLead(p, n); done {
			return ok
		}
		chunk, err := c.takeChunk()
		if err != nil {
			if c.setReason(reasonPoolExhausted, err) {
				c.s.metrics.reject(reasonPoolExhausted, apiNone)
			}
			c.client.Close()
			return false
		}
		c.rbuf, c.rr, c.rw = chunk, 0, copy(chunk, c.rlead[:n])
	}
	if !c.fillResp(8) {
		return false
	}
	head := c.rbuf[c.rr:]
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
	case c.s.rw.handles(p.key):
		return c.relayRewritten(p, total)
	case total <= len(c.rbuf):
		// The common case: the whole response fits the chunk; one write.
		if !c.fillResp(total) {
			return false
		}
		ok := c.writeClient(c.rbuf[c.rr : c.rr+total])
		c.consumeResp(total)
		return ok
	default:
		buffered := c.rbuf[c.rr:c.rw] // all of it this response's: it is larger than the chunk
		c.rr, c.rw = 0, 0
		return c.relayLarge(buffered, total)
	}
}

// fillResp reads from the upstream until the chunk holds at least n unread
// bytes (n <= chunk size), moving unread bytes to the front when needed.
func (c *conn) fillResp(n int) bool {
	if c.rw-c.rr >= n {
		return true
	}
	if c.rr+n > len(c.rbuf) {
		c.rw = copy(c.rbuf, c.rbuf[c.rr:c.rw])
		c.rr = 0
	}
	got, err := io.ReadAtLeast(c.upstream, c.rbuf[c.rw:], n-(c.rw-c.rr))
	c.rw += got
	if err != nil {
		c.upstreamFailed(err)
		return false
	}
	return true
}

func (c *conn) consumeResp(n int) {
	c.rr += n
	if c.rr == c.rw {
		c.rr, c.rw = 0, 0
	}
}

func (c *conn) releaseResp() {
	if c.rbuf != nil {
		c.s.opts.Pool.Put(c.rbuf)
		c.rbuf, c.rr, c.rw = nil, 0, 0
	}
}

// relayFromLead relays a response larger than a chunk whose header the
// first read put in c.rlead[:n] without taking a chunk at all: the lead
// bytes, then the rest spliced. Anything else (a small response, one to
// rewrite, a bad header) is left to the general path (done is false).
func (c *conn) relayFromLead(p pending, n int) (done, ok bool) {
	if n < 8 || c.s.rw.handles(p.key) {
		return false, false
	}
	size := int32(binary.BigEndian.Uint32(c.rlead[:]))
	corr := int32(binary.BigEndian.Uint32(c.rlead[4:]))
	total := 4 + int(size)
	if size < 4 || corr != p.corr || total <= c.s.opts.Pool.ChunkBytes() {
		return false, false
	}
	return true, c.relayLarge(c.rlead[:n], total)
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

// spliceStep is how much of a large response is relayed under one pair of
// deadlines, and the most writeClient writes under one: a step the client
// has not taken within WriteTimeout ends the connection (client_error), as
// does one the broker has not sent within RequestTimeout (request_timeout,
// see clientSideFailed); each step that completes refreshes both. So the
// deadlines measure a lack of progress, not the whole response: a consumer
// reading a 50 MiB fetch slowly but steadily is served, one taking less
// than a step per WriteTimeout is cut.
// The step is small because a step cut short loses the bytes the kernel
// pipe holds, so a timed-out step cannot be resumed.
const spliceStep = 256 << 10

// relayLarge relays a response larger than a chunk: buffered, its first
// bytes already read, then the rest, spliced between the sockets by the
// kernel when both are TCP, else copied through a chunk, in steps that each
// refresh the deadlines.
func (c *conn) relayLarge(buffered []byte, total int) bool {
	if !c.writeClient(buffered) {
		return false
	}
	rest := int64(total - len(buffered))
	src, dst := c.upstream, c.client
	dtc, splice := dst.(*net.TCPConn)
	splice = splice && isTCP(src)
	if !splice && c.rbuf == nil {
		chunk, terr := c.takeChunk()
		if terr != nil {
			if c.setReason(reasonPoolExhausted, terr) {
				c.s.metrics.reject(reasonPoolExhausted, apiNone)
			}
			c.client.Close()
			return false
		}
		c.rbuf, c.rr, c.rw = chunk, 0, 0
	}
	for rest > 0 {
		var n int64
		var err error
		rdl := c.upstreamDeadline(time.Now().Add(c.s.opts.RequestTimeout))
		if splice {
			wdl := time.Now().Add(c.s.opts.WriteTimeout)
			dst.SetWriteDeadline(wdl)
			c.rlim = io.LimitedReader{R: src, N: min(rest, spliceStep)}
			n, err = dtc.ReadFrom(&c.rlim)
			c.out.Add(n)
			c.s.metrics.sent(int(n))
			if err == nil && c.rlim.N > 0 {
				err = io.ErrUnexpectedEOF // the broker closed mid-response
			} else if err != nil && rest-n > 0 && c.clientSideFailed(err, wdl, rdl) {
				c.clientWriteFailed(fmt.Errorf("relay response: %w", err))
				return false
			}
		} else {
			var m int
			m, err = src.Read(c.rbuf[:min(int64(len(c.rbuf)), rest)])
			n = int64(m)
			if m > 0 && !c.writeClient(c.rbuf[:m]) {
				return false
			}
		}
		rest -= n
		if err != nil && rest > 0 {
			c.upstreamFailed(fmt.Errorf("relay response: %w", err))
			return false
		}
	}
	return true
}

// relayRewritten reads a whole Metadata, FindCoordinator, DescribeCluster
// or ApiVersions response, rewrites it and writes the result.
//
// kmsg decodes from one contiguous buffer and allocates by the counts the
// broker declares, so this memory is counted against the pool budget like
// chunks are (Pool.Reserve), in two steps: the body's bytes before the
// buffer is made, then, once framing.ResponseCost has walked the body and
// refused any count its bytes cannot hold, what kmsg will allocate and the
// re-encoded output. Both are given back when the response is written. A
// small response alone in the chunk it was read into is copied out and the
// chunk's own budget covers it all (Pool.Keep), so it waits for no one. A
// body that is malformed, too large or impossible closes the connection
// (bad_response); one whose rewrite does not fit the budget within
// pool.wait closes it pool_exhausted.
func (c *conn) relayRewritten(p pending, total int) bool {
	api := framing.APIName(p.key)
	if total-4 > int(c.s.opts.MaxRewriteBytes) {
		c.badResponse(api, fmt.Errorf("%w: %d bytes", errRewriteTooBig, total-4))
		return false
	}
	pool := c.s.opts.Pool
	var buf []byte
	held := 0
	defer func() { pool.Unreserve(held) }()
	inChunk := total <= len(c.rbuf)
	if inChunk {
		// It fits the chunk it is being read into: walk it there.
		if !c.fillResp(total) {
			return false
		}
		buf = c.rbuf[c.rr : c.rr+total]
		defer func() {
			if c.rbuf != nil {
				c.consumeResp(total)
			}
		}()
	} else {
		var ok bool
		if held, ok = c.reserve(api, int64(total)); !ok {
			return false
		}
		buf = make([]byte, total)
		n := copy(buf, c.rbuf[c.rr:c.rw])
		c.consumeResp(n)
		if _, err := io.ReadFull(c.upstream, buf[n:]); err != nil {
			c.upstreamFailed(err)
			return false
		}
	}
	hlen, err := framing.ResponseHeaderLen(buf[4:], p.key, p.version)
	if err != nil {
		c.badResponse(api, fmt.Errorf("rewrite %s: %w", api, err))
		return false
	}
	body := buf[4+hlen:]
	cost, addrs, err := framing.ResponseCost(p.key, p.version, body)
	if p.key == framing.KeyAPIVersions {
		// A broker that does not support the version asked answers in the
		// v0 shape, which rewrite falls back to: it must walk too.
		cost0, addrs0, err0 := framing.ResponseCost(p.key, 0, body)
		if err != nil {
			err = err0
		}
		cost, addrs = max(cost, cost0), max(addrs, addrs0)
	}
	if err != nil {
		c.badResponse(api, fmt.Errorf("rewrite %s v%d: %w", api, p.version, err))
		return false
	}
	// The output is the input re-encoded, each broker entry's host replaced
	// by one kafkaguard advertises.
	slack := rewriteSlack(addrs, c.s.rw.maxHostGrowth())
	need := cost + int64(total) + int64(slack)
	if inChunk && c.rw-c.rr == total && int64(total)+need <= int64(len(c.rbuf)) {
		// Small and alone in its chunk (the common case): copy it out and
		// let the chunk's budget cover the copy, the decode and the output,
		// so the rewrite waits for no one.
		buf = append(make([]byte, 0, total), buf...)
		body = buf[4+hlen:]
		held += pool.Keep(c.rbuf)
		c.rbuf, c.rr, c.rw = nil, 0, 0
	} else {
		more, ok := c.reserve(api, need)
		held += more
		if !ok {
			return false
		}
	}
	out, err := c.s.rw.rewrite(p.key, p.version, buf[:4+hlen], body, slack)
	if err != nil {
		c.badResponse(api, fmt.Errorf("rewrite %s v%d: %w", api, p.version, err))
		return false
	}
	buf = nil
	return c.writeClient(out)
}

// clientSideFailed tells which socket failed a splice step, which reports
// both sides' errors alike. A timeout is the client's only when its write
// deadline wdl has passed and the broker's read deadline rdl has not: then
// the step stalled writing (the client took less than a step in a whole
// WriteTimeout). Once rdl has passed too, the broker sent nothing for
// RequestTimeout (or the drain deadline came), which is the broker's
// failure whatever the write deadline says; with the defaults wdl comes
// first, so a broker silent mid-response would otherwise be blamed on the
// client. An error that is not a timeout is the client's when the broker's
// side is still open.
func (c *conn) clientSideFailed(err error, wdl, rdl time.Time) bool {
	if timeout, _ := classifyIO(err); timeout {
		now := time.Now()
		return !now.Before(wdl) && now.Before(rdl)
	}
	gone, _ := peerClosed(c.upstream)
	return !gone
}

// reserve takes n bytes of the pool budget for a rewrite (see
// relayRewritten), evicting slow frames and waiting up to pool.wait as a
// chunk request does; it returns the chunks to give back, or closes the
// connection pool_exhausted.
func (c *conn) reserve(api string, n int64) (int, bool) {
	k, err := c.reserveBytes(n)
	if err != nil {
		if c.setReason(reasonPoolExhausted, fmt.Errorf("rewrite %s: %d bytes: %w", api, n, err)) {
			c.s.metrics.reject(reasonPoolExhausted, api)
			if ok, sup := c.s.warnLog.allow(); ok {
				c.log.Warn().Str("reason", reasonPoolExhausted).Str("api", api).Int64("bytes", n).Err(err).
					Int("suppressed", sup).Msg("response to rewrite does not fit the pool budget")
			}
		}
		c.client.Close()
		c.upstream.Close()
		return 0, false
	}
	return k, true
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

// badResponse ends the connection over a broker response kafkaguard
// refuses to decode or cannot rewrite.
func (c *conn) badResponse(api string, err error) {
	if c.setReason(reasonBadResponse, err) {
		c.s.metrics.reject(reasonBadResponse, api)
		if ok, n := c.s.warnLog.allow(); ok {
			c.log.Warn().Str("reason", reasonBadResponse).Str("api", api).Err(err).Int("suppressed", n).
				Msg("bad upstream response")
		}
	}
	c.client.Close()
	c.upstream.Close()
}

// writeClient writes b to the client in steps of at most spliceStep bytes,
// each under its own deadline of WriteTimeout, as relayLarge splices: the
// client must take min(what is left, spliceStep) bytes in every
// WriteTimeout or the connection ends (client_error). So a slow but steady
// reader of a large response is served, while one taking a segment now and
// then cannot pin the chunk, reservation or answer behind b for longer than
// about one WriteTimeout per step. A step that times out cannot be resumed
// anyway: its bytes are part-written.
func (c *conn) writeClient(b []byte) bool {
	for len(b) > 0 {
		step := b[:min(len(b), spliceStep)]
		c.client.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
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
	reason := reasonUpstreamError
	switch {
	case timeout:
		reason = reasonRequestTimeout
	case eof:
		reason = reasonUpstreamClosed
	}
	if c.setReason(reason, err) {
		c.s.metrics.upstreamClose(reason)
		if reason == reasonRequestTimeout {
			if ok, n := c.s.warnLog.allow(); ok {
				c.log.Warn().Str("reason", reason).Str("api", framing.APIName(c.rkey)).
					Dur("request_timeout", c.s.opts.RequestTimeout).Int("suppressed", n).
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

// onlyWriter hides ReaderFrom so io.CopyBuffer uses the given chunk.
type onlyWriter struct{ io.Writer }
