package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
)

var (
	errCorrelation   = errors.New("response correlation id does not match the oldest request")
	errResponseSize  = errors.New("response size smaller than its header")
	errRewriteTooBig = errors.New("response to rewrite larger than proxy.max_rewrite_bytes")
)

// responseLoop is the broker->client pump. Responses come back in request
// order; each pending entry either names the upstream response to relay or
// carries a local response to write in its turn.
func (c *conn) responseLoop() {
	defer close(c.respDone)
	hdr := c.rhdr[:]
	for p := range c.inflight {
		if p.local != nil {
			if !c.writeClient(p.local) {
				return
			}
			continue
		}
		if _, err := io.ReadFull(c.upstream, hdr); err != nil {
			c.upstreamFailed(err)
			return
		}
		size := int32(binary.BigEndian.Uint32(hdr[:4]))
		corr := int32(binary.BigEndian.Uint32(hdr[4:]))
		if size < 4 {
			c.responseFailed(fmt.Errorf("%w: %d", errResponseSize, size))
			return
		}
		if corr != p.corr {
			c.responseFailed(fmt.Errorf("%w: got %d, want %d (%s)", errCorrelation, corr, p.corr, framing.APIName(p.key)))
			return
		}
		var ok bool
		if c.s.rw.handles(p.key) {
			ok = c.relayRewritten(p, size)
		} else {
			ok = c.relay(int(size) - 4)
		}
		if !ok {
			return
		}
	}
}

// relay copies one response whose first 8 bytes are in c.rhdr. A response that
// fits a chunk goes out in one write; a larger one is spliced between the
// sockets by the kernel when both are TCP, else copied through one chunk.
func (c *conn) relay(rest int) bool {
	hdr := c.rhdr[:]
	pool := c.s.opts.Pool
	chunk, err := pool.Get(c.s.opts.PoolWait, c.s.done)
	if err != nil {
		c.setReason(reasonPoolExhausted, err)
		c.client.Close()
		return false
	}
	defer pool.Put(chunk)
	c.client.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	if rest <= len(chunk)-8 {
		copy(chunk, hdr)
		if _, err := io.ReadFull(c.upstream, chunk[8:8+rest]); err != nil {
			c.upstreamFailed(err)
			return false
		}
		return c.writeClient(chunk[:8+rest])
	}
	if !c.writeClient(hdr) {
		return false
	}
	src, dst := c.upstream, c.client
	var n int64
	if dtc, ok := dst.(*net.TCPConn); ok && isTCP(src) {
		c.rlim = io.LimitedReader{R: src, N: int64(rest)}
		n, err = dtc.ReadFrom(&c.rlim)
	} else {
		n, err = io.CopyBuffer(onlyWriter{dst}, io.LimitReader(src, int64(rest)), chunk)
	}
	c.out.Add(n)
	c.s.metrics.sent(int(n))
	if err == nil && n < int64(rest) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		c.setReason(reasonUpstreamError, fmt.Errorf("relay response: %w", err))
		c.client.Close()
		c.upstream.Close()
		return false
	}
	return true
}

// relayRewritten reads a whole Metadata, FindCoordinator or DescribeCluster
// response, rewrites broker addresses and writes the result.
func (c *conn) relayRewritten(p pending, size int32) bool {
	if size > c.s.opts.MaxRewriteBytes {
		c.responseFailed(fmt.Errorf("%w: %d bytes", errRewriteTooBig, size))
		return false
	}
	// The broker is trusted and the size bounded: one buffer per rewritten
	// response (these APIs are rare next to Produce and Fetch).
	buf := make([]byte, 4+int(size))
	copy(buf, c.rhdr[:])
	if _, err := io.ReadFull(c.upstream, buf[8:]); err != nil {
		c.upstreamFailed(err)
		return false
	}
	hlen, err := framing.ResponseHeaderLen(buf[4:], p.key, p.version)
	if err != nil {
		c.responseFailed(fmt.Errorf("rewrite %s: %w", framing.APIName(p.key), err))
		return false
	}
	out, err := c.s.rw.rewrite(p.key, p.version, buf[:4+hlen], buf[4+hlen:])
	if err != nil {
		c.responseFailed(fmt.Errorf("rewrite %s v%d: %w", framing.APIName(p.key), p.version, err))
		return false
	}
	return c.writeClient(out)
}

func (c *conn) writeClient(b []byte) bool {
	c.client.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	n, err := c.client.Write(b)
	c.out.Add(int64(n))
	c.s.metrics.sent(n)
	if err != nil {
		c.setReason(reasonClientError, fmt.Errorf("write client: %w", err))
		c.client.Close()
		if up := c.upstreamConn(); up != nil {
			up.Close()
		}
		return false
	}
	return true
}

// upstreamFailed ends the connection after the broker closed or failed while
// a response was owed.
func (c *conn) upstreamFailed(err error) {
	_, eof := classifyIO(err)
	if eof {
		c.setReason(reasonUpstreamClosed, err)
	} else {
		c.setReason(reasonUpstreamError, err)
	}
	c.client.Close()
	c.upstream.Close()
}

func (c *conn) responseFailed(err error) {
	c.setReason(reasonUpstreamError, err)
	if ok, n := c.s.warnLog.allow(); ok {
		c.log.Warn().Err(err).Int("suppressed", n).Msg("bad upstream response")
	}
	c.client.Close()
	c.upstream.Close()
}

func isTCP(c net.Conn) bool { _, ok := c.(*net.TCPConn); return ok }

// onlyWriter hides ReaderFrom so io.CopyBuffer uses the given chunk.
type onlyWriter struct{ io.Writer }
