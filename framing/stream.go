package framing

import (
	"errors"
	"io"
)

// errBadVarint is a uvarint longer than five bytes or over 32 bits. It stays
// inside the package: the Produce reader turns it into ErrMalformedProduce.
var errBadVarint = errors.New("bad uvarint")

// maxEmptyReads is how many (0, nil) reads in a row fill accepts before it
// gives up with io.ErrNoProgress, as bufio does.
const maxEmptyReads = 100

// stream buffers reads from an io.Reader into a fixed buffer (the caller's
// scratch chunk), so that reading ints and varints costs no syscall each and
// bulk bytes are skipped chunk by chunk without ever being held.
type stream struct {
	r        io.Reader
	lr       *io.LimitedReader // r, when it is one; it tells how much is left
	buf      []byte
	pos, end int   // unread bytes are buf[pos:end]
	err      error // first read error; reported once the buffer runs dry
}

func (s *stream) reset(r io.Reader) {
	s.r = r
	s.lr, _ = r.(*io.LimitedReader)
	s.pos, s.end, s.err = 0, 0, nil
}

// remaining returns how many bytes are left in the body (buffered or not),
// or -1 when r does not say.
func (s *stream) remaining() int64 {
	if s.lr == nil {
		return -1
	}
	return int64(s.end-s.pos) + max(s.lr.N, 0)
}

// fill makes sure at least n bytes are buffered; n must not exceed len(buf).
// It reads as much as the buffer holds, not just n.
func (s *stream) fill(n int) error {
	if s.end-s.pos >= n {
		return nil
	}
	if s.err != nil {
		return s.err
	}
	if s.pos > 0 {
		s.end = copy(s.buf, s.buf[s.pos:s.end])
		s.pos = 0
	}
	for empty := 0; s.end < n; {
		m, err := s.r.Read(s.buf[s.end:])
		if m < 0 || m > len(s.buf)-s.end {
			s.err = errors.New("reader returned an invalid count")
			return s.err
		}
		s.end += m
		if err != nil {
			s.err = err
			if s.end >= n {
				return nil
			}
			return err
		}
		if m > 0 {
			empty = 0
		} else if empty++; empty >= maxEmptyReads {
			s.err = io.ErrNoProgress
			return s.err
		}
	}
	return nil
}

// next returns the next n bytes (n <= len(buf)); they stay valid until the
// next call on s.
func (s *stream) next(n int) ([]byte, error) {
	if err := s.fill(n); err != nil {
		return nil, err
	}
	b := s.buf[s.pos : s.pos+n]
	s.pos += n
	return b, nil
}

// collect returns the next n bytes, appended to dst[:0] when they do not
// fit the buffer. dst then grows with the bytes that actually arrive, never
// by n up front.
func (s *stream) collect(dst []byte, n int) ([]byte, []byte, error) {
	if n <= len(s.buf) {
		b, err := s.next(n)
		return b, dst, err
	}
	dst = dst[:0]
	for len(dst) < n {
		if err := s.fill(1); err != nil {
			return nil, dst, err
		}
		k := min(s.end-s.pos, n-len(dst))
		dst = append(dst, s.buf[s.pos:s.pos+k]...)
		s.pos += k
	}
	return dst, dst, nil
}

// skip discards the next n bytes, reading them through the buffer.
func (s *stream) skip(n int64) error {
	for n > 0 {
		if s.pos == s.end {
			if err := s.fill(1); err != nil {
				return err
			}
		}
		k := min(int64(s.end-s.pos), n)
		s.pos += int(k)
		n -= k
	}
	return nil
}

func (s *stream) byte() (byte, error) {
	if err := s.fill(1); err != nil {
		return 0, err
	}
	c := s.buf[s.pos]
	s.pos++
	return c, nil
}

// uvarint reads a Kafka unsigned varint: at most five bytes, 32 bits.
func (s *stream) uvarint() (uint32, error) {
	var v uint32
	for i := range 5 {
		c, err := s.byte()
		if err != nil {
			return 0, err
		}
		if i == 4 && c > 0x0f {
			return 0, errBadVarint
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errBadVarint
}

// atEOF reports whether the body has been read to its end.
func (s *stream) atEOF() (bool, error) {
	if rem := s.remaining(); rem >= 0 {
		return rem == 0, nil
	}
	switch err := s.fill(1); {
	case err == nil:
		return false, nil
	case errors.Is(err, io.EOF):
		return true, nil
	default:
		return false, err
	}
}
