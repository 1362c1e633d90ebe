package proxy

import (
	"errors"

	"github.com/kafkaguard/kafkaguard/limits"
)

// reason is why a connection ends or a frame is refused. Its label (the
// metric's reason, the log's reason) and whether it is an offence come from
// reasons, the one table, so no call site decides that for itself.
type reason uint8

const (
	reasonNone reason = iota // no reason recorded yet

	// Ends that are no one's offence.
	reasonClientClosed
	reasonIdle
	reasonShutdown
	reasonTruncated
	reasonClientError
	reasonUpstreamError
	reasonUpstreamClosed
	reasonRequestTimeout
	reasonDialFailed
	reasonPoolExhausted
	reasonBanned
	reasonBadResponse
	// reasonTLSAbandoned: a TLS client that started its handshake hung up
	// without an alert (a client closing while it still dialled). Its own
	// label, so handshake churn shows in connections_closed_total; no
	// offence (see classifyHandshake).
	reasonTLSAbandoned

	// Offences: the client sent something a Kafka client never sends.
	reasonBadSize
	reasonNotKafka
	reasonTLS
	// A TLS listener's handshake: plaintext Kafka on a TLS port, a bad or
	// unknown certificate (or bytes that are neither TLS nor Kafka), no
	// handshake within timeouts.tls_handshake.
	reasonPlaintextOnTLS
	reasonTLSHandshakeFailed
	reasonTLSHandshakeTimeout
	reasonHeaderTimeout
	reasonFrameTimeout
	reasonSlowFrame
	reasonAnswerTooLarge
	reasonMalformed
	reasonMalformedBody
	reasonClientIDTooBig
	reasonTooLarge
	reasonDeniedAPI
	reasonUnknownAPI
	reasonBadVersion
	// reasonTooLargeAnswered is too_large for a Produce answered
	// MESSAGE_TOO_LARGE: the connection stays open and the offence weighs
	// less.
	reasonTooLargeAnswered
	// SASL (see sasl.go): a request other than ApiVersions, SaslHandshake
	// and SaslAuthenticate before the login on a sasl: require listener; a
	// token or unauthenticated request over max_unauthenticated_bytes; a
	// SaslHandshake or SaslAuthenticate no client sends, or a v0 exchange
	// out of turn.
	reasonUnauthenticated
	reasonSaslTooLarge
	reasonMalformedSasl

	numReasons
)

// weightClass says whether a reason is an offence against the client's
// source and which of Options.Weights it counts.
type weightClass uint8

const (
	notOffence      weightClass = iota
	weighsClosed                // Weights.Closed: the connection was closed over it
	weighsRejection             // Weights.RejectedProduce: answered in the protocol
)

// reasons is the table of every reason: its label and its weight class.
var reasons = [numReasons]struct {
	label string
	class weightClass
}{
	reasonNone:                {"", notOffence},
	reasonClientClosed:        {"client_closed", notOffence},
	reasonIdle:                {"idle_timeout", notOffence},
	reasonShutdown:            {"shutdown", notOffence},
	reasonTruncated:           {"truncated", notOffence},
	reasonClientError:         {"client_error", notOffence},
	reasonUpstreamError:       {"upstream_error", notOffence},
	reasonUpstreamClosed:      {"upstream_closed", notOffence},
	reasonRequestTimeout:      {"request_timeout", notOffence},
	reasonDialFailed:          {"dial_failed", notOffence},
	reasonPoolExhausted:       {"pool_exhausted", notOffence},
	reasonBanned:              {"banned", notOffence},
	reasonBadResponse:         {"bad_response", notOffence},
	reasonTLSAbandoned:        {"tls_handshake_abandoned", notOffence},
	reasonBadSize:             {"bad_size", weighsClosed},
	reasonNotKafka:            {"not_kafka", weighsClosed},
	reasonTLS:                 {"tls_on_plaintext", weighsClosed},
	reasonPlaintextOnTLS:      {"plaintext_on_tls", weighsClosed},
	reasonTLSHandshakeFailed:  {"tls_handshake_failed", weighsClosed},
	reasonTLSHandshakeTimeout: {"tls_handshake_timeout", weighsClosed},
	reasonHeaderTimeout:       {"header_timeout", weighsClosed},
	reasonFrameTimeout:        {"frame_timeout", weighsClosed},
	reasonSlowFrame:           {"slow_frame", weighsClosed},
	reasonAnswerTooLarge:      {"answer_too_large", weighsClosed},
	reasonMalformed:           {"malformed_header", weighsClosed},
	reasonMalformedBody:       {"malformed_produce", weighsClosed},
	reasonClientIDTooBig:      {string(limits.ReasonClientIDTooLong), weighsClosed},
	reasonTooLarge:            {string(limits.ReasonTooLarge), weighsClosed},
	reasonDeniedAPI:           {string(limits.ReasonDeniedAPI), weighsClosed},
	reasonUnknownAPI:          {string(limits.ReasonUnknownAPI), weighsClosed},
	reasonBadVersion:          {string(limits.ReasonBadVersion), weighsClosed},
	reasonTooLargeAnswered:    {string(limits.ReasonTooLarge), weighsRejection},
	reasonUnauthenticated:     {"unauthenticated", weighsClosed},
	reasonSaslTooLarge:        {"sasl_too_large", weighsClosed},
	reasonMalformedSasl:       {"malformed_sasl", weighsClosed},
}

func (r reason) String() string { return reasons[r].label }

// policyReasons turns the policy's verdicts into reasons.
var policyReasons = map[limits.Reason]reason{
	limits.ReasonTooLarge:        reasonTooLarge,
	limits.ReasonClientIDTooLong: reasonClientIDTooBig,
	limits.ReasonDeniedAPI:       reasonDeniedAPI,
	limits.ReasonUnknownAPI:      reasonUnknownAPI,
	limits.ReasonBadVersion:      reasonBadVersion,
}

// apiNone is the api label of a refusal before a header was read.
const apiNone = "none"

var errNotKafka = errors.New("not the Kafka protocol")

// weight is how much an offence of reason r counts towards a ban; 0 for a
// reason that is no offence.
func (c *conn) weight(r reason) float64 {
	switch reasons[r].class {
	case weighsClosed:
		return c.s.live().Weights.Closed
	case weighsRejection:
		return c.s.live().Weights.RejectedProduce
	}
	return 0
}

// charge counts an offence of reason r against the client's source, as
// the table weighs it, and reports whether it earned the source a ban.
// clientID is "" off the request pump's goroutine, which owns c.req.clientID.
func (c *conn) charge(r reason, clientID string) (banned bool) {
	g, w := c.s.opts.Gate, c.weight(r)
	if g == nil || !c.ip.IsValid() || w <= 0 {
		return false
	}
	_, banned = g.OffenceBy(c.ip, limits.Offender{ClientID: clientID, Principal: c.principal()}, r.String(), w)
	return banned
}

// refuse ends the connection for reason r: the close reason, and, when it
// is the first, the metric, a rate-limited warning and the offence (if the
// table says r is one). It runs on the request pump, which owns
// c.req.clientID.
func (c *conn) refuse(r reason, api string, err error) {
	c.refuseAs(r, api, c.req.clientID, err)
}

// refuseAs is refuse naming clientID; another goroutine than the request
// pump names "". It reports whether r was the first reason to end c.
func (c *conn) refuseAs(r reason, api, clientID string, err error) bool {
	if !c.setReason(r, err) {
		return false // already ending (evicted, shut down): counted once, there
	}
	c.s.metrics.reject(r, api)
	c.warn(r, api, clientID, err)
	c.charge(r, clientID)
	return true
}

// poolSpent ends the connection because the chunk pool stayed spent for
// pool.wait, on whichever pump asked: the one place that is counted and
// logged. The caller closes what its side must.
func (c *conn) poolSpent(api string, err error) {
	if c.setReason(reasonPoolExhausted, err) {
		c.s.metrics.reject(reasonPoolExhausted, api)
		c.warn(reasonPoolExhausted, api, "", err)
	}
}

// warn logs a refusal, rate-limited across the server.
func (c *conn) warn(r reason, api, clientID string, err error) {
	if ok, n := c.s.warnLog.allow(); ok {
		c.log.Warn().Str("reason", r.String()).Str("api", api).Str("client_id", clientID).
			Err(err).Int("suppressed", n).Msg("refused client request")
	}
}
