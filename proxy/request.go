package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
	"github.com/kafkaguard/kafkaguard/limits"
)

// requestLoop is the client->broker pump. It returns true when the client
// ended cleanly between frames (or the server is draining), false when the
// connection must be torn down at once.
func (c *conn) requestLoop() (clean bool) {
	defer c.releaseReq()
	for {
		if !c.awaitAnswers() {
			r, _ := c.closeReason()
			return r == reasonShutdown
		}
		size, start, ok := c.readSize()
		if !ok || !c.frame(size, start) {
			// Ends that still owe the client its responses: its own end
			// of stream, a drain, or a ban earned by a request answered
			// locally.
			r, _ := c.closeReason()
			return r == reasonClientClosed || r == reasonShutdown || r == reasonBanned
		}
		c.holdSince.Store(0)
		c.frameBusy.Store(false)
		c.req.frames++
	}
}

// Request bytes are read into one pooled chunk, c.req.buf, as many as the
// socket has (up to the chunk), so a small frame usually costs one read and
// pipelined frames share reads; what is read past a frame is carried over
// to the next. With nothing carried, the wait for a next frame reads into
// the connection's small lead buffer instead, so an idle connection holds
// no chunk.

// readSize waits up to the idle timeout for the first byte of a frame (when
// none is carried over), then up to the header timeout for the rest of the
// length prefix.
func (c *conn) readSize() (int32, time.Time, bool) {
	if c.req.buf.buffered() == 0 {
		c.releaseReq()
		c.setReadDeadline(time.Now().Add(c.s.live().IdleTimeout))
		if c.draining() {
			c.setReason(reasonShutdown, nil)
			return 0, time.Time{}, false
		}
		n, err := c.client.Read(c.req.lead[:])
		if n == 0 {
			timeout, eof := classifyIO(err)
			switch {
			case timeout && c.draining():
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
		c.req.buf.take(chunk, copy(chunk, c.req.lead[:n]))
	} else {
		c.frameBusy.Store(true)
	}
	start := time.Now()
	c.holdSince.Store(start.UnixNano())
	if !c.fillReq(4, start.Add(c.s.live().HeaderTimeout), reasonHeaderTimeout, apiNone) {
		return 0, start, false
	}
	var first [4]byte
	copy(first[:], c.req.buf.unread())
	if c.req.frames == 0 {
		switch framing.Sniff(first) {
		case framing.ProtoHTTP:
			// string(first[:]), not first[:]: a slice handed to Errorf
			// would move first to the heap, an allocation every frame.
			c.refuse(reasonNotKafka, apiNone,
				fmt.Errorf("%w: first bytes %q look like an HTTP request", errNotKafka, string(first[:])))
			return 0, start, false
		case framing.ProtoTLS:
			c.refuse(reasonTLS, apiNone,
				fmt.Errorf("%w: first bytes look like a TLS ClientHello: the client is configured for TLS (security.protocol=SSL) on a plaintext listener", errNotKafka))
			return 0, start, false
		}
	}
	return int32(binary.BigEndian.Uint32(first[:])), start, true
}

// fillReq reads until c.req.buf.chunk holds at least n unread bytes (n <= chunk
// size), reading as much as the socket has, with deadline for any read it
// must wait for. A timeout is the offence timeoutReason.
func (c *conn) fillReq(n int, deadline time.Time, timeoutReason reason, api string) bool {
	if c.req.buf.buffered() >= n {
		return true
	}
	c.setReadDeadline(deadline)
	got, err := c.req.buf.fill(c.client, n)
	c.in.Add(int64(got))
	if err != nil {
		c.readFailed(err, timeoutReason, api)
		return false
	}
	return true
}

// setReadDeadline sets the client's read deadline when it changes.
func (c *conn) setReadDeadline(t time.Time) {
	if !t.Equal(c.req.readDeadline) {
		c.client.SetReadDeadline(t)
		c.req.readDeadline = t
	}
}

// releaseReq returns the request chunks to the pool.
func (c *conn) releaseReq() {
	c.req.buf.release(c.s.opts.Pool)
	c.putChunks()
}

// readFailed records why a read inside a frame failed: a timeout is the
// given offence, an end of stream a truncated frame.
func (c *conn) readFailed(err error, timeoutReason reason, api string) {
	timeout, eof := classifyIO(err)
	switch {
	case timeout:
		c.refuse(timeoutReason, api, err)
	case eof:
		c.setReason(reasonTruncated, err)
	default:
		c.setReason(reasonClientError, err)
	}
}

// frame handles one request whose length prefix starts c.req.buf. It
// returns false when the connection must close.
func (c *conn) frame(size int32, start time.Time) bool {
	if done, ok := c.saslFrame(size, start); done {
		return ok
	}
	pol := c.s.live().Policy
	if err := framing.CheckSize(size, pol.MaxLimit()); err != nil {
		if !errors.Is(err, framing.ErrFrameTooLarge) {
			c.refuse(reasonBadSize, apiNone, err)
			return false
		}
		if !pol.Drainable(size) {
			// Too large to be worth reading even to answer it: close now,
			// before a single byte more is read.
			c.refuse(reasonTooLarge, apiNone, err)
			return false
		}
	}
	h, ok := c.readHeader(size, start)
	if !ok {
		return false
	}
	if h.ClientID != nil && string(h.ClientID) != c.req.clientID {
		c.req.clientID = string(h.ClientID)
	}
	if !c.saslAllowed(h) {
		return false
	}
	api := framing.APIName(h.APIKey)
	action, why := pol.Check(h, size)
	switch action {
	case limits.Close:
		c.refuse(policyReasons[why], api,
			fmt.Errorf("%s v%d, %d bytes (limit %d)", api, h.APIVersion, size, pol.Limit(h.APIKey)))
		return false
	case limits.Reject:
		return c.reject(h, size, start)
	}
	if !c.saslRequest(h, size, start) {
		return false
	}
	return c.forward(h, size, start)
}

// readHeader reads until the request header after the length prefix in
// c.req.buf parses.
func (c *conn) readHeader(size int32, start time.Time) (framing.RequestHeader, bool) {
	total := 4 + int(size)
	limit := min(total, len(c.req.buf.chunk))
	for {
		avail := min(c.req.buf.buffered(), total)
		h, perr := framing.ParseRequestHeader(c.req.buf.unread()[4:avail], size, c.s.live().Policy.MaxClientIDBytes())
		if perr == nil {
			return h, true
		}
		if !errors.Is(perr, framing.ErrIncomplete) {
			r := reasonMalformed
			switch {
			case errors.Is(perr, framing.ErrClientIDTooLong):
				r = reasonClientIDTooBig
			case avail >= 8 && badVersion(h.APIKey, h.APIVersion):
				// A version kafkaguard does not know may also change the
				// header's shape; name the version, not the symptom.
				r = reasonBadVersion
			}
			c.refuse(r, framing.APIName(h.APIKey), perr)
			return h, false
		}
		if avail == limit {
			c.refuse(reasonMalformed, apiNone,
				fmt.Errorf("%w: header longer than %d bytes", framing.ErrMalformedHeader, limit-4))
			return h, false
		}
		if !c.fillReq(avail+1, start.Add(c.s.live().HeaderTimeout), reasonHeaderTimeout, apiNone) {
			return h, false
		}
	}
}

// badVersion reports a known API key at a version kafkaguard does not
// serve (see framing.ServesVersion).
func badVersion(key, version int16) bool {
	known, served := framing.ServesVersion(key, version)
	return known && !served
}
