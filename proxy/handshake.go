package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
)

// Sentinel errors of a failed client handshake, for errors.Is.
var (
	errPlaintextOnTLS        = errors.New("plaintext Kafka request on a TLS listener")
	errTLSHandshakeFailed    = errors.New("tls handshake failed")
	errTLSHandshakeTimeout   = errors.New("tls handshake timed out")
	errClosedBeforeHandshake = errors.New("client closed before its tls handshake")
	errClosedMidHandshake    = errors.New("client closed during its tls handshake")
	errCutByDrain            = errors.New("cut by a drain before its tls handshake")
)

// sniffLen is how many of a connection's first bytes firstBytesConn keeps:
// a Kafka request's size, api key and api version.
const sniffLen = 8

// firstBytesConn keeps the first sniffLen bytes read through it, so a
// failed handshake can say what the client sent instead of a ClientHello.
// It holds a fixed array, never more. It is owned by the goroutine running
// the handshake, and after it by the connection's reader.
type firstBytesConn struct {
	net.Conn
	first [sniffLen]byte
	n     int
}

func (c *firstBytesConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.n < len(c.first) && n > 0 {
		c.n += copy(c.first[c.n:], p[:n])
	}
	return n, err
}

// handshakeServer runs the server side of a TLS handshake on a freshly
// accepted connection, bounded by timeout. On failure it returns the reason
// for the metric and the log line and an error saying what went wrong; the
// caller closes raw. Only reasonClientClosed (a client, or a TCP health
// probe, that closed or reset without sending a byte) and
// reasonTLSAbandoned (a TLS client that hung up mid-handshake) are no
// offence.
func handshakeServer(raw net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, reason, error) {
	fb := &firstBytesConn{Conn: raw}
	tc := tls.Server(fb, cfg)
	reason, err := runHandshake(tc, fb, raw, timeout, nil)
	if err != nil {
		return nil, reason, err
	}
	return tc, reasonNone, nil
}

// runHandshake runs tc's server handshake, tc having been made over fb,
// which wraps raw; see handshakeServer. cut, if not nil, reports a drain
// (Shutdown, the listener removed): the handshake then does not start.
func runHandshake(tc *tls.Conn, fb *firstBytesConn, raw net.Conn, timeout time.Duration, cut func() bool) (reason, error) {
	if err := raw.SetDeadline(time.Now().Add(timeout)); err != nil {
		return reasonClientError, err
	}
	// A drain's interrupt (a read deadline of now) set before the line
	// above was overwritten by it; one set after stands. So look at the
	// drain only now, or the handshake would wait out its timeout.
	if cut != nil && cut() {
		return reasonShutdown, errCutByDrain
	}
	if err := tc.Handshake(); err != nil {
		return classifyHandshake(err, fb.first[:fb.n])
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return reasonClientError, err
	}
	return reasonNone, nil
}

// classifyHandshake names why a client's handshake failed, from the error
// and the first bytes the client sent. A plaintext Kafka request is named
// as such even when it came with a timeout: the bytes say more.
func classifyHandshake(err error, first []byte) (reason, error) {
	switch {
	case looksLikeKafkaRequest(first):
		return reasonPlaintextOnTLS, fmt.Errorf("%w: first bytes are a Kafka %s request: the client is configured for plaintext (security.protocol=PLAINTEXT) on a TLS listener",
			errPlaintextOnTLS, framing.APIName(int16(binary.BigEndian.Uint16(first[4:6]))))
	case len(first) >= 4 && framing.Sniff([4]byte(first[:4])) == framing.ProtoHTTP:
		return reasonNotKafka, fmt.Errorf("%w: first bytes %q look like an HTTP request", errNotKafka, first[:4])
	case errors.Is(err, os.ErrDeadlineExceeded):
		return reasonTLSHandshakeTimeout, fmt.Errorf("%w after %d bytes from the client: %w", errTLSHandshakeTimeout, len(first), err)
	case len(first) == 0 && (hungUp(err) || errors.Is(err, net.ErrClosed)):
		return reasonClientClosed, fmt.Errorf("%w: %w", errClosedBeforeHandshake, err)
	case len(first) > 0 && first[0] == tlsHandshakeRecord && hungUp(err):
		return reasonTLSAbandoned, fmt.Errorf("%w: %w", errClosedMidHandshake, err)
	}
	return reasonTLSHandshakeFailed, fmt.Errorf("%w: %w", errTLSHandshakeFailed, err)
}

// tlsHandshakeRecord is the content type that starts a TLS ClientHello.
const tlsHandshakeRecord = 0x16

// hungUp reports whether err is a peer going away without a word: end of
// stream, a reset, or a write to a closed socket. A TLS client that started
// its handshake and then did this gave up (a client closing while it still
// dialled a broker, or timing out on its side); one that rejects
// kafkaguard's certificate says so in an alert, which is no hang-up.
//
// It is no offence: an offence would not bound anything a completed
// handshake followed by a close (never an offence) does not, and it would
// push clients that shut down mid-dial towards a ban. What bounds the
// handshakes a source can make kafkaguard do is the gate's per-source
// connection cap and rate, judged before any TLS work.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// looksLikeKafkaRequest reports whether b starts like a Kafka request: a
// plausible size, then an api key and version kafkaguard knows. A TLS
// record starts 0x16 0x03, which as a size is over 300 MiB and whose api key
// bytes are a record length, so the two are never confused.
func looksLikeKafkaRequest(b []byte) bool {
	if len(b) < sniffLen {
		return false
	}
	if framing.Sniff([4]byte(b[:4])) != framing.ProtoKafka {
		return false
	}
	if framing.CheckSize(int32(binary.BigEndian.Uint32(b)), math.MaxInt32) != nil {
		return false
	}
	key, version := int16(binary.BigEndian.Uint16(b[4:])), int16(binary.BigEndian.Uint16(b[6:]))
	max, known := framing.MaxVersion(key)
	return known && version >= 0 && version <= max
}

// maxSubjectLen bounds a certificate subject in a log line: a subject is
// the client's choice, within what its CA signs.
const maxSubjectLen = 256

// PeerSubject returns the subject of the client's verified certificate
// ("CN=client,O=example"), or "" when the client sent none or it was not
// verified: a name kafkaguard has not checked is never logged as one.
func PeerSubject(cs tls.ConnectionState) string {
	if len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return ""
	}
	s := cs.PeerCertificates[0].Subject.String()
	if len(s) > maxSubjectLen {
		s = s[:maxSubjectLen] + "..."
	}
	return s
}
