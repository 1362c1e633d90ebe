package framing

// SaslFrame is what the next client frame of a connection in a v0 SASL
// exchange is.
type SaslFrame uint8

const (
	// SaslRequest is an ordinary Kafka request, with a request header: the
	// exchange is over (or never started), and the frame gets every check.
	SaslRequest SaslFrame = iota
	// SaslToken is a raw SASL token: a 4-byte length and opaque bytes, no
	// header. Forward it whole, bounded by the unauthenticated budget.
	SaslToken
	// SaslWait means the frame's kind depends on a broker answer not yet
	// seen (the handshake response, or OAUTHBEARER's reply). The caller
	// stops reading from the client, with a deadline, until it has fed
	// that answer to Handshake or Broker, and then asks again. No real
	// client sends here: each waits for the answer itself.
	SaslWait
)

// MaxSaslTokens bounds the raw tokens of one v0 exchange. PLAIN sends one,
// SCRAM two, OAUTHBEARER two at most, Kerberos GSSAPI three; a client that
// sends more is not logging in.
const MaxSaslTokens = 16

// SaslV0 follows the header-less exchange that a SaslHandshake v0 starts, so
// that a proxy knows which frames carry a request header and which are raw
// SASL tokens. It is a plain value with no lock: both pumps of a connection
// use it, so the caller guards it with one mutex that nothing re-enters.
//
// The wire, as Apache Kafka's SaslServerAuthenticator and
// SaslClientAuthenticator speak it: after a SaslHandshake v0 request whose
// response has error 0, the client sends each token as [int32 len][bytes]
// with no request header, and the broker (handshakeV0: no SaslAuthenticate
// headers) answers a token with [int32 len][bytes] with no correlation id
// only when its SaslServer.evaluateResponse returns a non-null challenge;
// a null challenge sends nothing. When SaslServer.isComplete() the broker
// reads Kafka requests again. On failure the broker closes the connection
// without a word: there is no error frame in v0. Per mechanism:
//
//   - PLAIN: one token; the broker answers an empty frame on success.
//   - SCRAM-SHA-256/512: client-first, server-first, client-final,
//     server-final: two tokens, two replies, complete after the second.
//   - OAUTHBEARER: one token; an empty reply is success. A non-empty reply
//     is an error challenge (JSON): the client answers with one token
//     (0x01) and the broker then closes.
//   - GSSAPI (Kerberos, the JDK's GssKrb5Server): the server answers every
//     token until its last, which it meets with a null challenge and no
//     reply: the client, complete itself, goes straight on to requests.
//
// So the rule for GSSAPI and any mechanism kafkaguard does not know is
// strict lockstep: a client frame is a token while every earlier token has
// had its reply; a client frame sent while a token is still unanswered
// means the broker completed silently, so it and all later frames are
// requests. This is right because a client in the exchange never sends
// before it has read the reply it waits for, and that reply passes through
// the proxy first: the caller must feed a raw reply to Broker before it
// writes the reply to the client, and ask Client after it has read the next
// frame's size. Its limits: a mechanism whose server completes with a
// non-empty final reply (DIGEST-MD5, say; no Kafka broker ships one
// enabled) would have its first request taken for a token, which is why
// tokens stay bounded by MaxSaslTokens and the caller's unauthenticated
// budget; and Authenticated for GSSAPI is inferred from the client going
// on, so the frame that ended it should still be held to that budget (the
// broker closes if it was not in fact complete).
type SaslV0 struct {
	mech       SaslMechanism
	handshake  bool // the handshake response has been seen
	accepted   bool // and its error code was 0
	tokens     int  // raw tokens the client sent
	replies    int  // raw replies the broker sent
	emptyReply bool // the latest raw reply had no bytes
	clientDone bool // the client has sent a request after the exchange
	silent     bool // GSSAPI/other: the last token got no reply
}

// NewSaslV0 starts following the exchange of a SaslHandshake v0 request
// naming mechanism m. Until Handshake is called every client frame waits.
func NewSaslV0(m SaslMechanism) SaslV0 {
	return SaslV0{mech: m}
}

// Handshake records the error code of the SaslHandshake v0 response. A
// non-zero code means no exchange follows (Kafka closes the connection after
// an unsupported mechanism): frames keep their headers. Only the first call
// counts: there is one response to one handshake.
func (s *SaslV0) Handshake(code int16) {
	if s.handshake {
		return
	}
	s.handshake = true
	s.accepted = code == 0
}

// Client says what the client's next frame is, and counts it if it is a
// token. Call it once per frame, after reading the frame's size and before
// forwarding any of it; on SaslWait call it again once the awaited answer
// is in. ErrSaslOutOfTurn: the client sent more than MaxSaslTokens tokens.
func (s *SaslV0) Client() (SaslFrame, error) {
	switch {
	case !s.handshake:
		return SaslWait, nil
	case !s.accepted || s.clientDone:
		return SaslRequest, nil
	}
	var token bool
	switch s.mech {
	case SaslPlain:
		token = s.tokens < 1
	case SaslScram:
		token = s.tokens < 2
	case SaslOAuthBearer:
		switch {
		case s.tokens == 0:
			token = true
		case s.tokens == 1 && s.replies == 0:
			return SaslWait, nil
		case s.tokens == 1:
			token = !s.emptyReply // the 0x01 that acknowledges an error
		}
	default: // GSSAPI and the unknown: lockstep, silent completion
		token = s.replies == s.tokens
		s.silent = !token
	}
	if !token {
		s.clientDone = true
		return SaslRequest, nil
	}
	if s.tokens >= MaxSaslTokens {
		return SaslRequest, ErrSaslOutOfTurn
	}
	s.tokens++
	return SaslToken, nil
}

// Broker says whether the broker's next frame is a raw reply (no
// correlation id), and counts it if so; size is the frame's length prefix.
// Call it after reading the size and before writing anything of the frame
// to the client. A frame that is not a raw reply is an ordinary response,
// which the caller matches against its in-flight queue as usual.
func (s *SaslV0) Broker(size int32) (raw bool) {
	if !s.handshake || !s.accepted || s.silent || s.replies >= s.tokens {
		return false
	}
	switch s.mech {
	case SaslPlain, SaslOAuthBearer:
		raw = s.replies < 1
	case SaslScram:
		raw = s.replies < 2
	default:
		raw = true
	}
	if raw {
		s.replies++
		s.emptyReply = size == 0
	}
	return raw
}

// Mechanism is the mechanism the exchange was started with.
func (s *SaslV0) Mechanism() SaslMechanism { return s.mech }

// Tokens is the number of raw tokens the client has sent so far.
func (s *SaslV0) Tokens() int { return s.tokens }

// Done reports that the exchange is over on both sides: the client has
// nothing more to send raw and the broker nothing more to answer raw, so
// the caller can drop the SaslV0 and go back to plain framing.
func (s *SaslV0) Done() bool {
	if !s.handshake {
		return false
	}
	if !s.accepted {
		return true
	}
	return s.Authenticated() || s.clientDone && (s.silent || s.replies >= s.wantReplies())
}

// wantReplies is how many raw replies the broker sends for the tokens sent.
func (s *SaslV0) wantReplies() int {
	switch s.mech {
	case SaslPlain, SaslOAuthBearer:
		return min(s.tokens, 1)
	case SaslScram:
		return min(s.tokens, 2)
	}
	return s.tokens
}

// Authenticated reports that the broker has accepted the client: PLAIN's
// reply, SCRAM's second reply, OAUTHBEARER's empty reply (a broker that
// refuses sends no reply, or an error challenge, and closes). For GSSAPI
// and unknown mechanisms it is inferred from the client going on to a
// request after a token without reply; see the type's comment.
func (s *SaslV0) Authenticated() bool {
	if !s.handshake || !s.accepted {
		return false
	}
	switch s.mech {
	case SaslPlain:
		return s.replies >= 1
	case SaslScram:
		return s.replies >= 2
	case SaslOAuthBearer:
		return s.replies >= 1 && s.tokens == 1 && s.emptyReply
	}
	return s.silent
}
