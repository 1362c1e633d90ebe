package framing

import (
	"encoding/binary"
	"errors"
	"unicode/utf8"
)

// SASL sentinel errors. They live here rather than in errors.go so that the
// SASL work merges apart from the rest of the package.
var (
	// ErrMalformedSasl is a SaslHandshake or SaslAuthenticate body that no
	// Kafka peer would send: a length that runs past the body, a mechanism
	// name that is empty or over MaxMechanismLen, a bad uvarint.
	ErrMalformedSasl = errors.New("malformed sasl message")
	// ErrSaslOutOfTurn is a frame that the v0 exchange does not allow where
	// it came: a token sent before the handshake was answered, a raw reply
	// from a broker that was sent no token, more tokens than MaxSaslTokens.
	ErrSaslOutOfTurn = errors.New("sasl frame out of turn")
)

// MaxMechanismLen bounds a SASL mechanism name. RFC 4422 allows 20
// characters; the slack admits custom mechanisms a broker may register while
// keeping a hostile handshake from naming a mechanism of any length.
const MaxMechanismLen = 64

// MaxPrincipalLen bounds the user name SaslPrincipal returns. A longer name
// is not returned at all (""), so a log line never carries more than this.
const MaxPrincipalLen = 256

// SaslMechanism is a SASL mechanism as far as kafkaguard tells them apart:
// by how many tokens the v0 exchange takes and whether it can see a user
// name in them.
type SaslMechanism uint8

const (
	// SaslOther is any mechanism not named below (GSSAPI, custom ones):
	// the token count is unknown, see SaslV0.
	SaslOther SaslMechanism = iota
	// SaslPlain is PLAIN (RFC 4616): one token, one empty reply.
	SaslPlain
	// SaslScram is SCRAM-SHA-256 or SCRAM-SHA-512 (RFC 5802): two tokens,
	// two replies.
	SaslScram
	// SaslOAuthBearer is OAUTHBEARER (RFC 7628): one token; an empty reply
	// is success, a non-empty one an error challenge that the client
	// acknowledges with one more token, after which the broker closes.
	SaslOAuthBearer
	// SaslGSSAPI is Kerberos through GSSAPI: a variable number of tokens.
	SaslGSSAPI
)

// ParseMechanism names the mechanism kafkaguard sees in a SaslHandshake.
// Kafka matches mechanism names exactly, so this does too.
func ParseMechanism(name []byte) SaslMechanism {
	switch string(name) { // no allocation: the compiler converts in place
	case "PLAIN":
		return SaslPlain
	case "SCRAM-SHA-256", "SCRAM-SHA-512":
		return SaslScram
	case "OAUTHBEARER":
		return SaslOAuthBearer
	case "GSSAPI":
		return SaslGSSAPI
	}
	return SaslOther
}

// String is the mechanism's family, a bounded metric label.
func (m SaslMechanism) String() string {
	switch m {
	case SaslPlain:
		return "plain"
	case SaslScram:
		return "scram"
	case SaslOAuthBearer:
		return "oauthbearer"
	case SaslGSSAPI:
		return "gssapi"
	}
	return "other"
}

// ParseSaslHandshakeRequest returns the mechanism named by a SaslHandshake
// request body (after the request header), v0 or v1: both are one STRING.
// The name aliases body. A name that is empty, over MaxMechanismLen, or runs
// past body, or bytes after it, are ErrMalformedSasl: the body is the whole
// frame after the header, and Kafka's own parser refuses trailing bytes.
func ParseSaslHandshakeRequest(body []byte, version int16) ([]byte, error) {
	if version < 0 || version > 1 {
		return nil, ErrMalformedSasl
	}
	if len(body) < 2 {
		return nil, ErrMalformedSasl
	}
	n := int(int16(binary.BigEndian.Uint16(body)))
	if n <= 0 || n > MaxMechanismLen || n != len(body)-2 {
		return nil, ErrMalformedSasl
	}
	return body[2:], nil
}

// SaslHandshakeError returns the error code of a SaslHandshake response body
// (after the correlation id), v0 or v1; it is the first field. The
// mechanism list after it is not read: a proxy needs only to know whether
// the broker accepted.
func SaslHandshakeError(body []byte) (int16, error) {
	if len(body) < 2 {
		return 0, ErrMalformedSasl
	}
	return int16(binary.BigEndian.Uint16(body)), nil
}

// SaslAuthenticateError returns the error code of a SaslAuthenticate
// response body (after the response header) of the given version, having
// checked the whole body: error_code, error_message (nullable), auth_bytes,
// then session_lifetime_ms in v1+ (ignored) and tagged fields in v2+
// (flexible). A body that does not end where its fields say is
// ErrMalformedSasl, so a proxy never takes a truncated or garbled answer for
// a success.
func SaslAuthenticateError(body []byte, version int16) (int16, error) {
	if version < 0 || version > 2 {
		return 0, ErrMalformedSasl
	}
	c := saslCursor{b: body, flexible: version >= 2}
	code := c.int16()
	c.bytes(true)  // error_message
	c.bytes(false) // auth_bytes
	if version >= 1 {
		c.skip(8) // session_lifetime_ms
	}
	c.tags()
	if c.bad || len(c.b) != 0 {
		return 0, ErrMalformedSasl
	}
	return code, nil
}

// ParseSaslAuthenticateRequest returns the auth_bytes of a SaslAuthenticate
// request body (after the request header), aliasing body: the token that a
// v1 handshake carries inside a Kafka request rather than raw.
func ParseSaslAuthenticateRequest(body []byte, version int16) ([]byte, error) {
	if version < 0 || version > 2 {
		return nil, ErrMalformedSasl
	}
	c := saslCursor{b: body, flexible: version >= 2}
	tok := c.bytes(false)
	c.tags()
	if c.bad || len(c.b) != 0 {
		return nil, ErrMalformedSasl
	}
	return tok, nil
}

// saslCursor reads the few field types of the SASL messages without
// allocating; the first error sticks in bad and later reads return zeros.
type saslCursor struct {
	b        []byte
	flexible bool
	bad      bool
}

func (c *saslCursor) skip(n int) []byte {
	if c.bad || n < 0 || n > len(c.b) {
		c.bad = true
		return nil
	}
	s := c.b[:n:n]
	c.b = c.b[n:]
	return s
}

func (c *saslCursor) int16() int16 {
	s := c.skip(2)
	if s == nil {
		return 0
	}
	return int16(binary.BigEndian.Uint16(s))
}

// bytes reads a (compact if flexible) string or bytes field; nullable says
// whether a null is allowed. Lengths are checked against what is left, never
// used to allocate.
func (c *saslCursor) bytes(nullable bool) []byte {
	if c.bad {
		return nil
	}
	var n int
	if c.flexible {
		v, k := uvarint(c.b)
		if k <= 0 {
			c.bad = true
			return nil
		}
		c.b = c.b[k:]
		n = int(v) - 1
	} else {
		// error_message is a STRING (int16 length); auth_bytes is BYTES
		// (int32 length) in the non-flexible versions.
		if nullable {
			s := c.skip(2)
			if s == nil {
				return nil
			}
			n = int(int16(binary.BigEndian.Uint16(s)))
		} else {
			s := c.skip(4)
			if s == nil {
				return nil
			}
			n = int(int32(binary.BigEndian.Uint32(s)))
		}
	}
	if n == -1 && nullable {
		return nil
	}
	return c.skip(n)
}

// tags skips a flexible message's tagged fields, bounded by MaxTaggedLen as
// in headers.
func (c *saslCursor) tags() {
	if c.bad || !c.flexible {
		return
	}
	n, err := skipTags(c.b, true, ErrMalformedSasl)
	if err != nil {
		c.bad = true
		return
	}
	c.b = c.b[n:]
}

// SaslPrincipal returns the user name that a client's first SASL token
// shows: the authcid of a PLAIN token ([authzid] NUL authcid NUL passwd) or
// the unescaped saslname of a SCRAM client-first-message
// (gs2-header n=saslname,r=nonce...). Other mechanisms, later tokens, and
// anything malformed, over MaxPrincipalLen, not UTF-8 or holding control
// characters give "", so a log line never carries a byte the client chose
// to confuse it.
//
// The PLAIN password is never copied: only the authcid bytes are turned into
// the returned string, and nothing here logs or keeps the token.
func SaslPrincipal(m SaslMechanism, token []byte) string {
	var user []byte
	switch m {
	case SaslPlain:
		user = plainAuthcid(token)
	case SaslScram:
		return scramUser(token)
	}
	if len(user) > MaxPrincipalLen || !printable(user) {
		return ""
	}
	return string(user)
}

func plainAuthcid(token []byte) []byte {
	first := indexByte(token, 0)
	if first < 0 {
		return nil
	}
	rest := token[first+1:]
	second := indexByte(rest, 0)
	if second <= 0 { // no password separator, or an empty authcid
		return nil
	}
	return rest[:second]
}

// scramUser reads "gs2-cbind-flag,[a=authzid],n=saslname,r=..." (RFC 5802
// section 7). Kafka accepts only the flag "n"; "y" is allowed here too, as
// it changes nothing about the name, and "p=" (channel binding) is not.
func scramUser(token []byte) string {
	if len(token) < 3 || (token[0] != 'n' && token[0] != 'y') || token[1] != ',' {
		return ""
	}
	rest := token[2:]
	c := indexByte(rest, ',') // end of the optional authzid
	if c < 0 {
		return ""
	}
	rest = rest[c+1:]
	if len(rest) < 2 || rest[0] != 'n' || rest[1] != '=' {
		return ""
	}
	rest = rest[2:]
	end := indexByte(rest, ',')
	if end < 0 || len(rest) < end+2 || rest[end+1] != 'r' {
		return ""
	}
	name := rest[:end]
	if len(name) == 0 || len(name) > 3*MaxPrincipalLen || !printable(name) {
		return ""
	}
	// Unescape =2C and =3D; any other '=' is invalid (RFC 5802 saslname).
	var buf [3 * MaxPrincipalLen]byte
	out := buf[:0]
	for i := 0; i < len(name); i++ {
		if name[i] != '=' {
			out = append(out, name[i])
			continue
		}
		if i+2 >= len(name) {
			return ""
		}
		switch string(name[i+1 : i+3]) {
		case "2C":
			out = append(out, ',')
		case "3D":
			out = append(out, '=')
		default:
			return ""
		}
		i += 2
	}
	if len(out) > MaxPrincipalLen {
		return ""
	}
	return string(out)
}

// printable reports a non-empty name of at most MaxPrincipalLen bytes of
// UTF-8 without control characters (scramUser checks escaped names against
// its own bound first).
func printable(b []byte) bool {
	if len(b) == 0 || len(b) > 3*MaxPrincipalLen || !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
