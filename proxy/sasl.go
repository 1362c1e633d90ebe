package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/framing"
)

// SASL through kafkaguard. Every mechanism passes through untouched:
// kafkaguard never answers, rewrites or holds back a SASL frame, and it
// never logs a token. It follows the login only as far as it must:
//
//   - After a SaslHandshake v0 whose response has error 0, the client's
//     tokens and the broker's replies are bare [int32 len][bytes] frames
//     with no header (framing.SaslV0 says which frame is which). Tokens
//     are forwarded whole, each at most Options.MaxUnauthenticatedBytes,
//     and the replies relayed without a correlation id; neither is an
//     offence.
//   - On a route with SASLRequire, until the broker has accepted the login
//     (a SaslAuthenticate response with error 0 that ends the mechanism's
//     exchange, or the v0 exchange completed), only ApiVersions,
//     SaslHandshake and SaslAuthenticate pass, each at most
//     MaxUnauthenticatedBytes, checked on the length prefix before any
//     byte of the body is read. Anything else is refused (unauthenticated,
//     an offence) and never reaches the broker.
//   - The user name a PLAIN or SCRAM first token shows (never the
//     password) becomes the connection's principal once the broker accepts
//     the login: in every later log line of the connection, and in the
//     gate's record of its offences (/bans).
//
// When the broker has accepted is read from its answers, which the response
// pump sees before the client does: PLAIN after one SaslAuthenticate with
// error 0, SCRAM after two. For OAUTHBEARER, GSSAPI and mechanisms
// kafkaguard does not know, the number of rounds is the mechanism's
// business, so the login is taken as done when, after an answer with error
// 0, the client sends a request that is not SASL (a broker that disagrees
// closes the connection, as Kafka does); that request is still held to
// MaxUnauthenticatedBytes.

// keyRawToken is the api key an inflight entry carries for a header-less v0
// token: the response pump reads the broker's reply, if any, without a
// correlation id. No Kafka api has a negative key.
const keyRawToken int16 = -1

var (
	errUnauthenticated = errors.New("request before the broker accepted a SASL login")
	errSaslTooLarge    = errors.New("frame over limits.max_unauthenticated_bytes before authentication")
	errSaslUnowed      = errors.New("broker frame after a SASL token with nothing owed")
	errSaslAnswer      = errors.New("SaslAuthenticate response kafkaguard cannot read")
)

// saslState follows one connection's SASL login. Both pumps use it: the
// request pump records what the client sends (the mechanism, the first
// token, the v0 tokens), the response pump what the broker answers (the
// handshake's error code, SaslAuthenticate's, the v0 replies). mu guards
// the fields after it and is held only to read or change them, never
// across I/O or with another lock.
type saslState struct {
	// authed is set once the broker has accepted a login; principal, when
	// the login showed a user name, is set just before it. Read by either
	// pump and by log lines (principalHook) without mu.
	authed    atomic.Bool
	principal atomic.Pointer[string]
	// inferred: a mechanism of unknown rounds got an answer with error 0,
	// so a request that is not SASL ends the login. Written under mu, read
	// by the request pump on every frame without it.
	inferred atomic.Bool

	// inV0 is the request pump's own: a v0 exchange runs, so v0 says what
	// each client frame is. It is dropped once the exchange is done.
	inV0 bool

	mu        sync.Mutex
	v0        framing.SaslV0
	mech      framing.SaslMechanism // of the latest SaslHandshake
	candidate string                // the user name the latest login's first token shows ("" = none)
	authReqs  int                   // SaslAuthenticate requests since the latest handshake
	authOKs   int                   // their responses with error 0
	// changed (cap 1, made with the first v0 exchange) tells a request
	// pump waiting for the handshake's or OAUTHBEARER's answer that the
	// response pump has fed one to v0.
	changed chan struct{}
}

// principal returns the user the broker accepted, or "".
func (c *conn) principal() string {
	if p := c.sasl.principal.Load(); p != nil {
		return *p
	}
	return ""
}

// principalHook adds the principal to every log line of a connection once
// the broker has accepted its login, so that c.log, built before the login,
// never changes hands between the pumps.
type principalHook struct{ s *saslState }

func (h principalHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	if p := h.s.principal.Load(); p != nil {
		e.Str("principal", *p)
	}
}

// saslFrame runs on the request pump when a frame's length prefix is read,
// before anything else is: a v0 token is forwarded here (done), and a frame
// from a client not yet authenticated on a sasl: require route is bounded
// by MaxUnauthenticatedBytes before any byte of its body is read.
func (c *conn) saslFrame(size int32, start time.Time) (done, ok bool) {
	s := &c.sasl
	if !s.inV0 && (!c.r.SASLRequire || s.authed.Load()) {
		return false, false
	}
	endsLogin := false
	if s.inV0 {
		kind, ok := c.saslV0Next(start)
		if !ok {
			return true, false
		}
		if kind == framing.SaslToken {
			return true, c.forwardToken(size, start)
		}
		s.mu.Lock()
		if s.v0.Done() {
			s.inV0 = false
		}
		// GSSAPI and unknown mechanisms: a request after a token without
		// reply is how the exchange ends; that request still pays the
		// unauthenticated budget below.
		endsLogin = s.v0.Authenticated() && !s.authed.Load()
		s.mu.Unlock()
	}
	if c.r.SASLRequire && (!s.authed.Load() || endsLogin) && size > c.s.opts.MaxUnauthenticatedBytes {
		c.refuse(reasonSaslTooLarge, apiNone, fmt.Errorf("%w: %d bytes (limit %d)", errSaslTooLarge, size, c.s.opts.MaxUnauthenticatedBytes))
		return true, false
	}
	if endsLogin {
		c.loggedIn()
	}
	return false, false
}

// saslV0Next asks the v0 exchange what the frame just begun is. When the
// answer depends on a broker answer not yet relayed (a client that sends
// before it has read what it waits for, which no real client does), it
// waits for the response pump to feed it, not reading from the client; the
// wait ends with the response side (its own request timeout).
func (c *conn) saslV0Next(start time.Time) (framing.SaslFrame, bool) {
	s := &c.sasl
	for {
		s.mu.Lock()
		kind, err := s.v0.Client()
		s.mu.Unlock()
		if err != nil {
			c.refuse(reasonMalformedSasl, apiSaslToken, fmt.Errorf("%w: more than %d SASL tokens", err, framing.MaxSaslTokens))
			return kind, false
		}
		if kind != framing.SaslWait {
			return kind, true
		}
		// Waiting on the broker, not the client: never a slow frame to evict.
		held := c.holdSince.Swap(0)
		select {
		case <-s.changed:
		case <-c.inflight.failed:
			c.setReason(reasonUpstreamClosed, nil)
			return kind, false
		case <-c.s.done:
			c.setReason(reasonShutdown, nil)
			return kind, false
		}
		if held != 0 {
			c.holdSince.Store(held + time.Since(start).Nanoseconds())
		}
	}
}

// apiSaslToken is the api label of a refused v0 token.
const apiSaslToken = "SaslToken"

// forwardToken forwards a v0 token: size bytes after the length prefix, no
// header. The first token of a PLAIN or SCRAM login shows the user name.
func (c *conn) forwardToken(size int32, start time.Time) bool {
	if size < 0 || size > c.s.opts.MaxUnauthenticatedBytes {
		c.refuse(reasonSaslTooLarge, apiSaslToken, fmt.Errorf("%w: SASL token of %d bytes (limit %d)", errSaslTooLarge, size, c.s.opts.MaxUnauthenticatedBytes))
		return false
	}
	s := &c.sasl
	s.mu.Lock()
	first, mech := s.v0.Tokens() == 1, s.mech
	s.mu.Unlock()
	if total := 4 + int(size); first && total <= len(c.req.buf.chunk) {
		if !c.fillReq(total, start.Add(c.s.live().FrameTimeout), reasonFrameTimeout, apiSaslToken) {
			return false
		}
		user := framing.SaslPrincipal(mech, c.req.buf.unread()[4:total])
		s.mu.Lock()
		s.candidate = user
		s.mu.Unlock()
	}
	// The broker's reply, if any, comes in its turn without a correlation id.
	return c.forward(framing.RequestHeader{APIKey: keyRawToken}, size, start)
}

// saslAllowed runs on the request pump once a request's header is read,
// before the policy judges it: before the login on a sasl: require route
// only the SASL requests and ApiVersions pass.
func (c *conn) saslAllowed(h framing.RequestHeader) bool {
	s := &c.sasl
	key := h.APIKey
	if key != framing.KeySaslHandshake && key != framing.KeySaslAuthenticate && !s.authed.Load() {
		switch {
		case s.inferred.Load():
			c.loggedIn()
		case c.r.SASLRequire && key != framing.KeyAPIVersions:
			c.refuse(reasonUnauthenticated, framing.APIName(key), fmt.Errorf("%w: %s on a listener with sasl: require", errUnauthenticated, framing.APIName(key)))
			return false
		}
	}
	return true
}

// saslRequest runs on the request pump before a request the policy allows
// is forwarded: a SaslHandshake or SaslAuthenticate is read whole (they are
// small) for its mechanism or first token.
func (c *conn) saslRequest(h framing.RequestHeader, size int32, start time.Time) bool {
	s := &c.sasl
	key := h.APIKey
	if key != framing.KeySaslHandshake && key != framing.KeySaslAuthenticate {
		return true
	}
	total := 4 + int(size)
	if total > len(c.req.buf.chunk) {
		if key == framing.KeySaslHandshake {
			c.refuse(reasonMalformedSasl, framing.APIName(key), fmt.Errorf("%w: SaslHandshake of %d bytes", framing.ErrMalformedSasl, size))
			return false
		}
		// A SaslAuthenticate larger than a chunk: passed on unread (no
		// principal from it).
		s.mu.Lock()
		s.authReqs++
		s.mu.Unlock()
		return true
	}
	if !c.fillReq(total, start.Add(c.s.live().FrameTimeout), reasonFrameTimeout, framing.APIName(key)) {
		return false
	}
	body := c.req.buf.unread()[4+h.Len : total]
	if key == framing.KeySaslHandshake {
		name, err := framing.ParseSaslHandshakeRequest(body, h.APIVersion)
		if err != nil {
			c.refuse(reasonMalformedSasl, framing.APIName(key), fmt.Errorf("SaslHandshake v%d: %w", h.APIVersion, err))
			return false
		}
		m := framing.ParseMechanism(name)
		s.mu.Lock()
		s.mech, s.candidate, s.authReqs, s.authOKs = m, "", 0, 0
		s.inferred.Store(false)
		if h.APIVersion == 0 {
			s.v0 = framing.NewSaslV0(m)
			if s.changed == nil {
				s.changed = make(chan struct{}, 1)
			}
		}
		s.mu.Unlock()
		s.inV0 = h.APIVersion == 0
		return true
	}
	tok, err := framing.ParseSaslAuthenticateRequest(body, h.APIVersion)
	if err != nil {
		c.refuse(reasonMalformedSasl, framing.APIName(key), fmt.Errorf("SaslAuthenticate v%d: %w", h.APIVersion, err))
		return false
	}
	s.mu.Lock()
	if s.authReqs == 0 {
		s.candidate = framing.SaslPrincipal(s.mech, tok)
	}
	s.authReqs++
	s.mu.Unlock()
	return true
}

// loggedIn marks the connection authenticated, with the user name its
// login showed, on either pump. The first login is logged.
func (c *conn) loggedIn() {
	s := &c.sasl
	s.mu.Lock()
	user, mech := s.candidate, s.mech
	s.mu.Unlock()
	if user != "" && c.principal() != user {
		s.principal.Store(&user)
	}
	if !s.authed.Swap(true) {
		c.s.metrics.saslLogin(mech, "accepted")
		if ok, n := c.s.connLog.allow(); ok {
			c.log.Info().Str("mechanism", mech.String()).Int("suppressed", n).Msg("sasl login accepted by the broker")
		}
	}
}

// saslResponse runs on the response pump for the answer to a SASL request
// or v0 token, before a byte of it reaches the client, so that the client
// never acts on an answer kafkaguard has not taken in. A v0 reply is
// relayed here (done). The answers to SaslHandshake and SaslAuthenticate
// are read in the chunk and left there for relayNext to relay.
func (c *conn) saslResponse(p inflightReq) (done, ok bool) {
	if p.key == keyRawToken {
		return true, c.relayToken(p)
	}
	if !c.fillRespFirst(8) {
		return true, false
	}
	head := c.resp.buf.unread()
	size := int32(binary.BigEndian.Uint32(head))
	if size < 4 || int32(binary.BigEndian.Uint32(head[4:])) != p.corr {
		return false, false // relayNext names the fault
	}
	total := 4 + int(size)
	s := &c.sasl
	if p.key == framing.KeySaslHandshake {
		if size < 6 || !c.fillResp(10) {
			if size < 6 {
				c.responseFailed(fmt.Errorf("SaslHandshake response of %d bytes: %w", size, framing.ErrMalformedSasl))
			}
			return true, false
		}
		code := int16(binary.BigEndian.Uint16(c.resp.buf.unread()[8:]))
		if p.version == 0 {
			s.mu.Lock()
			s.v0.Handshake(code)
			s.mu.Unlock()
			s.notify()
		}
		return false, false
	}
	if total > len(c.resp.buf.chunk) {
		if c.r.SASLRequire {
			c.responseFailed(fmt.Errorf("%w: %d bytes, more than pool.chunk_bytes", errSaslAnswer, total))
			return true, false
		}
		return false, false
	}
	if !c.fillResp(total) {
		return true, false
	}
	b := c.resp.buf.unread()[4:total]
	hl, err := framing.ResponseHeaderLen(b, p.key, p.version)
	var code int16
	if err == nil {
		code, err = framing.SaslAuthenticateError(b[hl:], p.version)
	}
	if err != nil {
		if c.r.SASLRequire {
			c.responseFailed(fmt.Errorf("%w: %w", errSaslAnswer, err))
			return true, false
		}
		return false, false
	}
	if code != 0 {
		s.mu.Lock()
		mech := s.mech
		s.mu.Unlock()
		c.s.metrics.saslLogin(mech, "refused")
		if ok, n := c.s.connLog.allow(); ok {
			c.log.Info().Int16("error_code", code).Int("suppressed", n).Msg("sasl login refused by the broker")
		}
		return false, false
	}
	s.mu.Lock()
	s.authOKs++
	accepted := false
	switch s.mech {
	case framing.SaslPlain:
		accepted = true
	case framing.SaslScram:
		accepted = s.authOKs >= 2
	default:
		s.inferred.Store(true)
	}
	s.mu.Unlock()
	if accepted {
		c.loggedIn()
	}
	return false, false
}

// notify wakes a request pump waiting in saslV0Next.
func (s *saslState) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// relayToken relays the broker's header-less reply to a v0 token, if it
// sends one. A frame that v0 says is no reply (a GSSAPI server completes
// with no reply, and the client goes on to requests) is the response to the
// next entry in flight: p is dropped and that entry answered.
func (c *conn) relayToken(p inflightReq) bool {
	if !c.fillRespFirst(4) {
		return false
	}
	size := int32(binary.BigEndian.Uint32(c.resp.buf.unread()))
	s := &c.sasl
	s.mu.Lock()
	raw := s.v0.Broker(size)
	done := raw && s.v0.Authenticated() && !s.authed.Load()
	s.mu.Unlock()
	s.notify()
	if !raw {
		return c.relayAfterToken()
	}
	if size < 0 {
		c.responseFailed(fmt.Errorf("%w: SASL reply of %d bytes", errResponseSize, size))
		return false
	}
	if done {
		c.loggedIn()
	}
	total := 4 + int(size)
	if total <= len(c.resp.buf.chunk) {
		if !c.fillResp(total) {
			return false
		}
		ok := c.writeClient(c.resp.buf.unread()[:total])
		c.resp.buf.consume(total)
		return ok
	}
	buffered := c.resp.buf.unread()
	c.resp.buf.consume(len(buffered))
	return c.relayLarge(buffered, total)
}

// relayAfterToken answers the entries after a v0 token that got no reply:
// local answers in turn, then the first upstream one, whose response is the
// frame just read. Each entry left behind gives back its slot here; the
// last one relayed gives back its own in responseLoop.
func (c *conn) relayAfterToken() bool {
	q := &c.inflight
	for {
		next, ok := q.take()
		if !ok {
			c.responseFailed(errSaslUnowed)
			return false
		}
		<-q.slots // the entry before next is done
		if next.local == nil {
			return c.relayNext(next)
		}
		if !c.writeAnswer(next.local) {
			return false
		}
	}
}

// take removes and returns the oldest entry in flight without waiting.
func (q *inflight) take() (inflightReq, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.queue) {
		return inflightReq{}, false
	}
	p := q.queue[q.head]
	q.queue[q.head] = inflightReq{}
	q.head++
	if q.head == len(q.queue) {
		q.queue, q.head = q.queue[:0], 0
	}
	return p, true
}

// fillRespFirst reads until at least n (<= a chunk) bytes of the broker's
// answer are in c.resp.buf, waiting for the first of them in the small lead
// buffer, so a pump waiting on the broker holds no chunk.
func (c *conn) fillRespFirst(n int) bool {
	if c.resp.buf.chunk == nil {
		m, err := c.upstream.Read(c.resp.lead[:])
		if m == 0 {
			c.upstreamFailed(err)
			return false
		}
		chunk, err := c.takeChunk()
		if err != nil {
			c.poolSpent(apiNone, err)
			c.client.Close()
			return false
		}
		c.resp.buf.take(chunk, copy(chunk, c.resp.lead[:m]))
	}
	return c.fillResp(n)
}

// newSaslLogins makes kafkaguard_sasl_logins_total{mechanism, result}: the
// logins kafkaguard saw the broker accept or refuse, by mechanism family
// (framing.SaslMechanism's names: five at most) and result (accepted,
// refused). Refused logins are the broker's business, not offences; a
// rising rate is someone guessing passwords.
func newSaslLogins(reg prometheus.Registerer) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kafkaguard_sasl_logins_total",
		Help: "SASL logins the broker accepted or refused (result), by mechanism family (plain, scram, oauthbearer, gssapi, other).",
	}, []string{"mechanism", "result"})
	if reg != nil {
		reg.MustRegister(v)
	}
	return v
}

func (m *Metrics) saslLogin(mech framing.SaslMechanism, result string) {
	if m != nil && m.saslLogins != nil {
		m.saslLogins.WithLabelValues(mech.String(), result).Inc()
	}
}
