package framing

import "encoding/binary"

// MaxTaggedLen is the most bytes of tagged fields (count included) this
// package accepts in a request or response header. Kafka sends none in
// headers today; the cap bounds the header a caller must buffer, and a
// header that carries more is ErrMalformedHeader rather than a reason to
// read without end.
const MaxTaggedLen = 256

// RequestHeader is a parsed request header.
type RequestHeader struct {
	APIKey        int16
	APIVersion    int16
	CorrelationID int32
	// ClientID aliases the buffer given to ParseRequestHeader. It is nil
	// when the id is null (length -1) or the header is v0.
	ClientID []byte
	// Version is the header version used: 0, 1 or 2.
	Version int8
	// Len is the length of the header in bytes: where the body starts in
	// the frame (after the size prefix).
	Len int
}

// ParseRequestHeader parses the request header at the start of b, the first
// bytes of a frame body (after the size prefix); frameLen is the declared
// body size, and bytes of b past it are ignored.
//
// It returns ErrIncomplete while b is too short: the caller reads more and
// calls again. It returns ErrClientIDTooLong as soon as the client id length
// is visible and exceeds maxClientID, before the id bytes arrive, so a
// client cannot make the proxy wait for (or buffer) a long id;
// ErrClientIDOverrun when the id runs past frameLen; ErrMalformedHeader for
// a client id length below -1, a bad uvarint, or tagged fields that run past
// frameLen or over MaxTaggedLen; ErrFrameTooSmall for frameLen below
// MinRequestSize. The fields parsed before an error are filled in, so a
// caller can name the api of a refused frame.
//
// It neither allocates nor wraps its errors, so that a flood of bad headers
// costs nothing but the bytes read.
func ParseRequestHeader(b []byte, frameLen int32, maxClientID int) (RequestHeader, error) {
	var h RequestHeader
	if frameLen < MinRequestSize {
		return h, ErrFrameTooSmall
	}
	if int64(len(b)) > int64(frameLen) {
		b = b[:frameLen]
	}
	if len(b) < MinRequestSize {
		return h, ErrIncomplete
	}
	h.APIKey = int16(binary.BigEndian.Uint16(b[0:]))
	h.APIVersion = int16(binary.BigEndian.Uint16(b[2:]))
	h.CorrelationID = int32(binary.BigEndian.Uint32(b[4:]))
	h.Version, _ = HeaderVersion(h.APIKey, h.APIVersion)
	if h.Version == 0 {
		h.Len = MinRequestSize
		return h, nil
	}

	const idAt = MinRequestSize + 2
	if frameLen < idAt {
		return h, ErrMalformedHeader
	}
	if len(b) < idAt {
		return h, ErrIncomplete
	}
	idLen := int(int16(binary.BigEndian.Uint16(b[MinRequestSize:])))
	switch {
	case idLen < -1:
		return h, ErrMalformedHeader
	case idLen > maxClientID:
		return h, ErrClientIDTooLong
	case int64(idAt+max(idLen, 0)) > int64(frameLen):
		return h, ErrClientIDOverrun
	}
	off := idAt
	if idLen >= 0 {
		if len(b) < off+idLen {
			return h, ErrIncomplete
		}
		h.ClientID = b[off : off+idLen : off+idLen]
		off += idLen
	}
	if h.Version == 1 {
		h.Len = off
		return h, nil
	}

	n, err := skipTags(b[off:], len(b) == int(frameLen), ErrMalformedHeader)
	if err != nil {
		return h, err
	}
	h.Len = off + n
	return h, nil
}

// ResponseHeaderLen returns the length of the response header at the start
// of b (the bytes after the size prefix) in a response to a request of key
// and version: 4 (the correlation id) for response header v0, 4 plus the
// tagged fields for v1. Flexible requests get v1, except ApiVersions (key
// 18), whose response header is always v0 so that a client can read the
// broker's answer before knowing what it supports. It returns ErrIncomplete
// while b is too short and ErrMalformedResponseHeader for bad tagged fields
// (or more than MaxTaggedLen bytes of them).
func ResponseHeaderLen(b []byte, key, version int16) (int, error) {
	if len(b) < 4 {
		return 0, ErrIncomplete
	}
	if hv, _ := HeaderVersion(key, version); hv < 2 || key == KeyAPIVersions {
		return 4, nil
	}
	n, err := skipTags(b[4:], false, ErrMalformedResponseHeader)
	if err != nil {
		return 0, err
	}
	return 4 + n, nil
}

// skipTags returns the length of the tagged fields at the start of b: a
// uvarint count, then per field a uvarint tag, a uvarint length and that
// many bytes. final says b holds every byte there is (the rest of the
// frame), so running out of it is malformed rather than incomplete.
func skipTags(b []byte, final bool, malformed error) (int, error) {
	short := ErrIncomplete
	switch {
	case len(b) >= MaxTaggedLen:
		// Tags that do not fit in the cap are malformed whatever follows.
		b, short = b[:MaxTaggedLen], malformed
	case final:
		short = malformed
	}
	count, off := uvarint(b)
	if off <= 0 {
		return 0, varintErr(off, short, malformed)
	}
	// Each field takes at least two bytes, so a count over the cap can
	// never be satisfied; refuse it before looping.
	if count > MaxTaggedLen/2 {
		return 0, malformed
	}
	for range count {
		_, n := uvarint(b[off:]) // tag
		if n <= 0 {
			return 0, varintErr(n, short, malformed)
		}
		off += n
		size, n := uvarint(b[off:])
		if n <= 0 {
			return 0, varintErr(n, short, malformed)
		}
		off += n
		if size > MaxTaggedLen {
			return 0, malformed
		}
		if int(size) > len(b)-off {
			return 0, short
		}
		off += int(size)
	}
	return off, nil
}

func varintErr(n int, short, malformed error) error {
	if n == 0 {
		return short
	}
	return malformed
}

// uvarint decodes a Kafka unsigned varint (at most five bytes, 32 bits) from
// the start of b. n is the number of bytes read; 0 means b ends first, and
// a negative n means the varint is longer than five bytes or overflows 32
// bits.
func uvarint(b []byte) (v uint32, n int) {
	for i := range 5 {
		if i >= len(b) {
			return 0, 0
		}
		c := b[i]
		if i == 4 && c > 0x0f {
			return 0, -1
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, -1
}
