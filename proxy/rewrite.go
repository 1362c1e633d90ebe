package proxy

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/framing"
)

// rewriter replaces broker addresses in responses with the addresses of the
// kafkaguard listeners that front those brokers, so a client bootstrapped on
// any listener only ever learns kafkaguard's addresses.
type rewriter struct{ s *Server }

// handles reports whether responses to key are rewritten: the three APIs
// that carry broker addresses, and ApiVersions, whose version ranges are
// clamped.
func (rw *rewriter) handles(key int16) bool {
	switch key {
	case framing.KeyMetadata, framing.KeyFindCoordinator, framing.KeyDescribeCluster, framing.KeyAPIVersions:
		return true
	}
	return false
}

// advertise returns the address clients should use for a broker.
func (rw *rewriter) advertise(node int32, host string, port int32) (string, int32) {
	for _, r := range rw.s.routeList() {
		match := r.HasNodeID && r.NodeID == node ||
			!r.HasNodeID && r.upPort == port && strings.EqualFold(r.upHost, host)
		if match {
			if r.advHost == "" {
				return host, r.advPort
			}
			return r.advHost, r.advPort
		}
	}
	if p := rw.s.opts.UnmappedPort; p > 0 {
		return host, int32(p)
	}
	rw.s.metrics.unmapped()
	if ok, n := rw.s.warnLog.allow(); ok {
		rw.s.log.Warn().Int32("node", node).Str("host", host).Int32("port", port).Int("suppressed", n).
			Msg("broker not fronted by any listener left unrewritten; set rewrite.unmapped_port or add a listener")
	}
	return host, port
}

// maxHostGrowth is the most bytes rewriting one broker entry can add: the
// longest host kafkaguard advertises (an unmapped broker keeps its own),
// plus 2 for its length prefix, whose uvarint in flexible versions grows
// from 1 byte (an empty host, matched by node id) to at most 3.
func (rw *rewriter) maxHostGrowth() int {
	n := 0
	for _, r := range rw.s.routeList() {
		n = max(n, len(r.advHost))
	}
	return n + 2
}

// rewriteSlack is how many bytes a rewritten response may be longer than
// the broker's: addrs broker entries, each grown by at most growth (see
// maxHostGrowth), and 64 more for the rest of the re-encoding.
// relayRewritten reserves it and rewrite sizes its output with it, so the
// output is allocated once, within the reservation.
func rewriteSlack(addrs, growth int) int { return addrs*growth + 64 }

// rewrite decodes body (the response after its header) with kmsg, rewrites
// every broker address and returns the whole frame: head (size prefix and
// response header, as the broker sent them) then the new body, with the
// size prefix fixed. The output is made with room for slack bytes more
// than head and body (rewriteSlack), so encoding it never reallocates.
func (rw *rewriter) rewrite(key, version int16, head, body []byte, slack int) ([]byte, error) {
	resp := kmsg.ResponseForKey(key)
	resp.SetVersion(version)
	if err := resp.ReadFrom(body); err != nil {
		if key != framing.KeyAPIVersions {
			return nil, err
		}
		// A broker that does not support the ApiVersions version asked
		// answers UNSUPPORTED_VERSION in the v0 body.
		resp.SetVersion(0)
		if err := resp.ReadFrom(body); err != nil {
			return nil, err
		}
	}
	switch r := resp.(type) {
	case *kmsg.ApiVersionsResponse:
		rw.clampVersions(r)
	case *kmsg.MetadataResponse:
		for i := range r.Brokers {
			b := &r.Brokers[i]
			b.Host, b.Port = rw.advertise(b.NodeID, b.Host, b.Port)
		}
	case *kmsg.FindCoordinatorResponse:
		if isCoordinator(r.ErrorCode, r.NodeID, r.Host) {
			r.Host, r.Port = rw.advertise(r.NodeID, r.Host, r.Port)
		}
		for i := range r.Coordinators {
			co := &r.Coordinators[i]
			if isCoordinator(co.ErrorCode, co.NodeID, co.Host) {
				co.Host, co.Port = rw.advertise(co.NodeID, co.Host, co.Port)
			}
		}
	case *kmsg.DescribeClusterResponse:
		for i := range r.Brokers {
			b := &r.Brokers[i]
			b.Host, b.Port = rw.advertise(b.NodeID, b.Host, b.Port)
		}
	}
	out := make([]byte, len(head), len(head)+len(body)+slack)
	copy(out, head)
	out = resp.AppendTo(out)
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	rw.s.metrics.rewrite(kmsg.NameForKey(key))
	return out, nil
}

// isCoordinator reports whether a FindCoordinator entry names a broker. An
// error entry (COORDINATOR_NOT_AVAILABLE and the like: node -1, host "",
// port -1) names none: it is passed through untouched, neither counted as
// an unmapped broker nor given rewrite.unmapped_port, or the client would
// be sent to a port on no host. From v4 the top-level fields are not on
// the wire and decode empty.
func isCoordinator(errorCode int16, node int32, host string) bool {
	return errorCode == 0 && node >= 0 && host != ""
}

// clampVersions narrows the versions a broker offers to those kafkaguard
// parses, and drops keys it would refuse (denied, or unknown when unknown
// keys are closed). Without it a client newer than kafkaguard would pick a
// version kafkaguard closes, and reconnect and try again forever.
func (rw *rewriter) clampVersions(r *kmsg.ApiVersionsResponse) {
	pol := rw.s.live().Policy
	kept := r.ApiKeys[:0]
	for _, k := range r.ApiKeys {
		maxVer, known := framing.MaxVersion(k.ApiKey)
		switch {
		case pol.Denied(k.ApiKey):
			continue
		case !known:
			if !pol.ForwardsUnknown() {
				continue
			}
		default:
			if _, served := framing.ServesVersion(k.ApiKey, k.MaxVersion); !served {
				if k.MinVersion > maxVer {
					continue
				}
				k.MaxVersion = min(k.MaxVersion, maxVer)
			}
		}
		kept = append(kept, k)
	}
	r.ApiKeys = kept
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
func (c *conn) relayRewritten(p inflightReq, total int) bool {
	api := framing.APIName(p.key)
	if total-4 > int(c.s.opts.MaxRewriteBytes) {
		c.badResponse(api, fmt.Errorf("%w: %d bytes", errRewriteTooBig, total-4))
		return false
	}
	pool := c.s.opts.Pool
	var buf []byte
	held := 0
	defer func() { pool.Unreserve(held) }()
	inChunk := total <= len(c.resp.buf.chunk)
	if inChunk {
		// It fits the chunk it is being read into: walk it there.
		if !c.fillResp(total) {
			return false
		}
		buf = c.resp.buf.unread()[:total]
		defer func() {
			if c.resp.buf.chunk != nil {
				c.resp.buf.consume(total)
			}
		}()
	} else {
		var ok bool
		if held, ok = c.reserve(api, int64(total)); !ok {
			return false
		}
		buf = make([]byte, total)
		n := copy(buf, c.resp.buf.unread())
		c.resp.buf.consume(n)
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
	slack := rewriteSlack(addrs, c.s.rewriter.maxHostGrowth())
	need := cost + int64(total) + int64(slack)
	if inChunk && c.resp.buf.buffered() == total && int64(total)+need <= int64(len(c.resp.buf.chunk)) {
		// Small and alone in its chunk (the common case): copy it out and
		// let the chunk's budget cover the copy, the decode and the output,
		// so the rewrite waits for no one.
		buf = append(make([]byte, 0, total), buf...)
		body = buf[4+hlen:]
		held += pool.Keep(c.resp.buf.chunk)
		c.resp.buf.take(nil, 0)
	} else {
		more, ok := c.reserve(api, need)
		held += more
		if !ok {
			return false
		}
	}
	out, err := c.s.rewriter.rewrite(p.key, p.version, buf[:4+hlen], body, slack)
	if err != nil {
		c.badResponse(api, fmt.Errorf("rewrite %s v%d: %w", api, p.version, err))
		return false
	}
	buf = nil
	return c.writeClient(out)
}

// reserve takes n bytes of the pool budget for a rewrite (see
// relayRewritten), evicting slow frames and waiting up to pool.wait as a
// chunk request does; it returns the chunks to give back, or closes the
// connection pool_exhausted.
func (c *conn) reserve(api string, n int64) (int, bool) {
	k, err := c.reserveBytes(n)
	if err != nil {
		c.poolSpent(api, fmt.Errorf("response to rewrite: %s of %d bytes does not fit the pool budget: %w", api, n, err))
		c.client.Close()
		c.upstream.Close()
		return 0, false
	}
	return k, true
}

// badResponse ends the connection over a broker response kafkaguard
// refuses to decode or cannot rewrite.
func (c *conn) badResponse(api string, err error) {
	if c.setReason(reasonBadResponse, err) {
		c.s.metrics.reject(reasonBadResponse, api)
		if ok, n := c.s.warnLog.allow(); ok {
			c.log.Warn().Str("reason", reasonBadResponse.String()).Str("api", api).Err(err).Int("suppressed", n).
				Msg("bad upstream response")
		}
	}
	c.client.Close()
	c.upstream.Close()
}
