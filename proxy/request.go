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
	reasonMalformed      = "malformed_header"
	reasonMalformedBody  = "malformed_produce"
	reasonClientIDTooBig = string(limits.ReasonClientIDTooLong)
	reasonTooLarge       = string(limits.ReasonTooLarge)
	apiNone              = "none"
	keyAPIVersions       = 18
)

var errNotKafka = errors.New("not the Kafka protocol")

// requestLoop is the client->broker pump. It returns true when the client
// ended cleanly between frames (or the server is draining), false when the
// connection must be torn down at once.
func (c *conn) requestLoop() (clean bool) {
	for {
		size, start, ok := c.readSize()
		if !ok || !c.frame(size, start) {
			// Ends that still owe the client its responses: its own end
			// of stream, a drain, or a ban earned by a request answered
			// locally.
			reason, _ := c.closeReason()
			return reason == reasonClientClosed || reason == reasonShutdown || reason == reasonBanned
		}
		c.frameBusy.Store(false)
		c.frames++
	}
}

// readSize waits up to the idle timeout for the first byte of a frame, then
// up to the header timeout for the rest of the length prefix.
func (c *conn) readSize() (int32, time.Time, bool) {
	c.client.SetReadDeadline(time.Now().Add(c.s.opts.IdleTimeout))
	if c.s.draining.Load() {
		c.setReason(reasonShutdown, nil)
		return 0, time.Time{}, false
	}
	n, err := c.client.Read(c.size[:])
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
	start := time.Now()
	c.client.SetReadDeadline(start.Add(c.s.opts.HeaderTimeout))
	if n < len(c.size) {
		if _, err := io.ReadFull(c.client, c.size[n:]); err != nil {
			c.readFailed(err, reasonHeaderTimeout, apiNone)
			return 0, start, false
		}
	}
	c.in.Add(4)
	if c.frames == 0 {
		switch framing.Sniff(c.size) {
		case framing.ProtoHTTP:
			c.offence(reasonNotKafka, apiNone, c.s.opts.Weights.Closed,
				fmt.Errorf("%w: first bytes %q look like an HTTP request", errNotKafka, c.size[:]))
			return 0, start, false
		case framing.ProtoTLS:
			c.offence(reasonTLS, apiNone, c.s.opts.Weights.Closed,
				fmt.Errorf("%w: first bytes look like a TLS ClientHello: the client is configured for TLS (security.protocol=SSL) on a plaintext listener", errNotKafka))
			return 0, start, false
		}
	}
	return int32(binary.BigEndian.Uint32(c.size[:])), start, true
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

// frame handles one request whose length prefix has been read. It returns
// false when the connection must close.
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

	chunk, ok := c.getChunk()
	if !ok {
		return false
	}
	c.chunks = append(c.chunks[:0], chunk)
	defer c.putChunks()

	h, got, ok := c.readHeader(size, start)
	if !ok {
		return false
	}
	if h.ClientID != nil && string(h.ClientID) != c.clientID {
		c.clientID = string(h.ClientID)
	}
	maxVer, knownKey := framing.MaxVersion(h.APIKey)
	api := framing.APIName(h.APIKey)
	action, why := pol.Check(h.APIKey, h.APIVersion, knownKey, !knownKey || h.APIVersion <= maxVer, size)
	switch action {
	case limits.Close:
		c.offence(string(why), api, c.s.opts.Weights.Closed,
			fmt.Errorf("%s v%d, %d bytes (limit %d)", api, h.APIVersion, size, pol.Limit(h.APIKey)))
		return false
	case limits.Reject:
		return c.reject(h, size, got, start)
	}

	return c.forward(h, size, got, start)
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

// readHeader reads the start of the frame into the first chunk until the
// request header parses. It returns the header and how many bytes of the
// frame the chunk holds.
func (c *conn) readHeader(size int32, start time.Time) (framing.RequestHeader, int, bool) {
	chunk := c.chunks[0]
	limit := min(int(size), len(chunk))
	got := 0
	for {
		n, err := c.client.Read(chunk[got:limit])
		got += n
		h, perr := framing.ParseRequestHeader(chunk[:got], size, c.s.opts.Policy.MaxClientIDBytes())
		if perr == nil {
			c.in.Add(int64(got))
			return h, got, true
		}
		if !errors.Is(perr, framing.ErrIncomplete) {
			reason := reasonMalformed
			switch {
			case errors.Is(perr, framing.ErrClientIDTooLong):
				reason = reasonClientIDTooBig
			case got >= 4 && badVersion(h.APIKey, h.APIVersion):
				// A version kafkaguard does not know may also change the
				// header's shape; name the version, not the symptom.
				reason = string(limits.ReasonBadVersion)
			}
			c.offence(reason, framing.APIName(h.APIKey), c.s.opts.Weights.Closed, perr)
			return h, got, false
		}
		if got == limit {
			c.offence(reasonMalformed, apiNone, c.s.opts.Weights.Closed,
				fmt.Errorf("%w: header longer than %d bytes", framing.ErrMalformedHeader, limit))
			return h, got, false
		}
		if err != nil {
			c.readFailed(err, reasonHeaderTimeout, apiNone)
			return h, got, false
		}
	}
}

// getChunk takes a chunk from the pool, waiting at most PoolWait.
func (c *conn) getChunk() ([]byte, bool) {
	chunk, err := c.s.opts.Pool.Get(c.s.opts.PoolWait, c.s.done)
	if err != nil {
		c.s.metrics.reject(reasonPoolExhausted, apiNone)
		c.setReason(reasonPoolExhausted, err)
		c.warn(reasonPoolExhausted, apiNone, err)
		return nil, false
	}
	return chunk, true
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
// length prefix; larger ones are written chunk by chunk as they arrive.
func (c *conn) forward(h framing.RequestHeader, size int32, got int, start time.Time) bool {
	c.client.SetReadDeadline(start.Add(c.s.opts.FrameTimeout))
	cut := c.s.opts.CutThroughBytes
	cutThrough := cut > 0 && size > cut
	expect := true
	if h.APIKey == 0 { // Produce with acks=0 gets no response
		// The acks field is near the start of the body; make sure the
		// first chunk holds it.
		acks, ok, err := c.fillUntilAcks(h, size, &got)
		if err != nil {
			return false
		}
		if !ok {
			c.offence(reasonMalformedBody, "Produce", c.s.opts.Weights.Closed,
				errors.New("produce acks not within the first chunk"))
			return false
		}
		expect = acks != 0
	}
	queued := false
	// send writes what the chunks hold; the first call dials the upstream
	// if needed and queues the request, so both happen only once the frame
	// is whole (or, cut through, its first chunk is full).
	send := func(withPrefix bool, filled int) bool {
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
		return c.writeUpstream(withPrefix, filled)
	}
	remaining := int(size) - got
	filled := got
	sentPrefix := false
	for remaining > 0 {
		cur := c.chunks[len(c.chunks)-1]
		if filled == len(cur) {
			if cutThrough {
				if !send(!sentPrefix, filled) {
					return false
				}
				sentPrefix = true
				c.chunks = c.chunks[:1]
			} else {
				next, ok := c.getChunk()
				if !ok {
					return false
				}
				c.chunks = append(c.chunks, next)
			}
			cur, filled = c.chunks[len(c.chunks)-1], 0
		}
		n, err := c.client.Read(cur[filled:min(len(cur), filled+remaining)])
		filled += n
		remaining -= n
		c.in.Add(int64(n))
		if err != nil && remaining > 0 {
			c.readFailed(err, reasonFrameTimeout, framing.APIName(h.APIKey))
			return false
		}
	}
	if !send(!sentPrefix, filled) {
		return false
	}
	c.s.metrics.forward(h.APIKey, int(size)+4)
	return true
}

// fillUntilAcks reads more of a Produce frame into the first chunk until
// the acks field is there, and returns it.
func (c *conn) fillUntilAcks(h framing.RequestHeader, size int32, got *int) (acks int16, ok bool, err error) {
	chunk := c.chunks[0]
	limit := min(int(size), len(chunk))
	for {
		acks, ok, perr := peekProduceAcks(chunk[h.Len:*got], h.APIVersion)
		if perr != nil {
			c.offence(reasonMalformedBody, "Produce", c.s.opts.Weights.Closed, perr)
			return 0, false, perr
		}
		if ok || *got == limit {
			return acks, ok, nil
		}
		n, rerr := c.client.Read(chunk[*got:limit])
		*got += n
		c.in.Add(int64(n))
		if rerr != nil && n == 0 {
			c.readFailed(rerr, reasonFrameTimeout, "Produce")
			return 0, false, rerr
		}
	}
}

// writeUpstream writes the stored chunks (the last one filled to
// lastFilled), led by the length prefix when withPrefix, in one writev.
func (c *conn) writeUpstream(withPrefix bool, lastFilled int) bool {
	c.bufs = c.bufs[:0]
	if withPrefix {
		c.bufs = append(c.bufs, c.size[:])
	}
	for i, ch := range c.chunks {
		if i == len(c.chunks)-1 {
			ch = ch[:lastFilled]
		}
		c.bufs = append(c.bufs, ch)
	}
	c.wbufs = c.bufs
	c.upstream.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	if _, err := c.wbufs.WriteTo(c.upstream); err != nil {
		c.setReason(reasonUpstreamError, fmt.Errorf("write upstream: %w", err))
		return false
	}
	return true
}

// offence records a refused frame or connection: the metric, a rate-limited
// warning, the close reason, and the offence against the client's address.
func (c *conn) offence(reason, api string, weight float64, err error) {
	c.s.metrics.reject(reason, api)
	c.setReason(reason, err)
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

// badVersion reports a known API key at a version outside the range
// kafkaguard knows. ApiVersions is exempt: clients probe it with versions
// newer than the broker's, and the broker answers them.
func badVersion(key, version int16) bool {
	maxVer, known := framing.MaxVersion(key)
	return known && key != keyAPIVersions && (version < 0 || version > maxVer)
}
