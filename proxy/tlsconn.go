package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// tlsSocket is a TLS session over a TCP socket, on either side of a
// connection. Its Close closes the socket at once: tls.Conn.Close first
// writes a close_notify alert under its own 5 s write deadline, so a peer
// that stopped reading would hold a teardown, or Shutdown's abort, for that
// long. Kafka clients and brokers treat a closed socket as a close; the
// alert tells them nothing more.
type tlsSocket struct {
	*tls.Conn
	raw net.Conn
}

// Close closes the socket, not the session: see tlsSocket.
func (t *tlsSocket) Close() error { return t.raw.Close() }

// socketOf returns the TCP socket under nc: nc itself when it is plaintext.
// Whatever works on the socket rather than the byte stream (SetLinger,
// peerClosed's peek) must use it: a TLS session is neither a TCPConn nor a
// syscall.Conn.
func socketOf(nc net.Conn) net.Conn {
	if t, ok := nc.(*tlsSocket); ok {
		return t.raw
	}
	return nc
}

// spliceable reports whether bytes may move between the two sockets by the
// kernel (TCPConn.ReadFrom, which splices on Linux) instead of through a
// chunk. Only when both sides are plain TCP: a TLS session on either side
// must be decrypted or encrypted in user space, and a splice would pass its
// records through as if they were Kafka bytes. Every splice site asks this
// one predicate. It runs on the response pump, or on the request pump, both
// of which may read c.upstream freely once it is set.
func (c *conn) spliceable() bool {
	if c.upstream == nil {
		return false
	}
	return isTCP(c.client) && isTCP(c.upstream)
}

// handshake runs the client's TLS handshake on a TLS listener, bounded by
// Options.TLSHandshakeTimeout, on the connection's own goroutine: the gate
// has admitted it already, so a refused source costs no TLS work, and the
// accept loop never waits on a client. A failed or timed-out handshake is
// an offence with its reason; a client that closed without a byte (a TCP
// health probe), one that hung up mid-handshake (a client closing while it
// dialled: tls_handshake_abandoned) or one cut by a drain (Shutdown or its
// listener removed) is not. On success the verified
// client certificate's subject joins the connection's log lines.
func (c *conn) handshake() bool {
	tc := c.client.(*tlsSocket).Conn
	r, err := runHandshake(tc, c.sniff, c.raw(), c.s.opts.TLSHandshakeTimeout, c.draining)
	if err == nil {
		// Nothing else reads c.log yet: no pump has started and the
		// connection holds no chunk another could evict it for.
		if subj := PeerSubject(tc.ConnectionState()); subj != "" {
			c.log = c.log.With().Str("tls_subject", subj).Logger()
		}
		return true
	}
	if c.draining() && r == reasonTLSHandshakeTimeout {
		r = reasonShutdown // the drain's interrupt (Shutdown, a removed listener) set the deadline
	}
	switch r {
	case reasonClientClosed, reasonTLSAbandoned, reasonShutdown, reasonClientError:
		c.setReason(r, err)
	default:
		c.refuseAs(r, apiNone, "", err)
	}
	return false
}

// raw returns the client's socket.
func (c *conn) raw() net.Conn { return socketOf(c.client) }

// dialTLS runs the TLS handshake with the broker over raw, bounded by
// Options.TLSHandshakeTimeout and by Shutdown giving up (s.kill). The
// config comes from the route's files at each dial, so a rotated CA or
// client certificate applies to the next connection. On failure raw is
// closed.
func (c *conn) dialTLS(raw net.Conn) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(c.s.kill, c.s.opts.TLSHandshakeTimeout)
	defer cancel()
	tc := tls.Client(raw, c.r.UpstreamTLS.Config())
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with broker %s: %w", c.r.Upstream, err)
	}
	return &tlsSocket{Conn: tc, raw: raw}, nil
}

// newClientTLS wraps a TLS listener's fresh socket in the server side of a
// session, with no I/O yet: handshake runs it. The firstBytesConn under it
// keeps what a client sent instead of a ClientHello.
func newClientTLS(nc net.Conn, cfg *tls.Config) (*tlsSocket, *firstBytesConn) {
	fb := &firstBytesConn{Conn: nc}
	return &tlsSocket{Conn: tls.Server(fb, cfg), raw: nc}, fb
}
