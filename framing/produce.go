package framing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// maxStringLen caps topic names and transactional ids. Kafka's int16
// strings cannot be longer; compact strings could, but no broker accepts
// them, so a longer one is malformed rather than something to buffer.
const maxStringLen = 32767

// minScratch is the smallest scratch buffer the Produce reader uses; a
// smaller one is replaced by a buffer inside the reader.
const minScratch = 64

// ProduceRequest is what a ProduceReader extracts from a Produce body:
// enough to decide on acks and to answer every topic-partition locally.
// Records are skipped, never held.
type ProduceRequest struct {
	Version         int16
	TransactionalID *string // v3+; nil when null or before v3
	Acks            int16
	TimeoutMillis   int32
	Topics          []ProduceTopic
}

// ProduceTopic is one topic of a Produce request.
type ProduceTopic struct {
	Name       string   // v0-12; empty from v13
	TopicID    [16]byte // v13+; zero before
	Partitions []int32  // partition indexes, in request order
}

// ProduceReader reads a Produce request body from a reader without holding
// its records. It reads in two steps, Head then Topics, so that a caller can
// decide on acks before reading the rest.
//
// The reader buffers ahead, so r must be bounded to the frame body (an
// io.LimitedReader of exactly the body length is best: the reader then also
// spots lengths that run past the body before reading them). A body that
// ends early is ErrMalformedProduce wrapping io.ErrUnexpectedEOF; other read
// errors (deadlines, resets) are returned wrapped as they are.
//
// All memory is the scratch buffer plus what the request's own slices and
// strings grow to; nothing is sized by a length read off the wire.
type ProduceReader struct {
	in       stream
	version  int16
	flexible bool
	maxParts int
	state    uint8 // readFresh, readHead or readDone
	err      error // sticky: once failed, the reader stays failed until Reset
	str      []byte
	small    [minScratch]byte
}

const (
	readFresh uint8 = iota
	readHead
	readDone
)

// NewProduceReader returns a reader of a Produce body of the given version
// from r. scratch is the buffer all bytes pass through (typically one pooled
// 32 KiB chunk); one shorter than 64 bytes is replaced by a small buffer of
// the reader's own. The reader keeps scratch until it is dropped, so a
// pooled chunk goes back to its pool only with the reader. A request naming more than maxPartitions partitions in
// all, or more topics than that, is refused with ErrTooManyPartitions; a
// non-positive maxPartitions admits none.
func NewProduceReader(r io.Reader, version int16, scratch []byte, maxPartitions int) *ProduceReader {
	p := &ProduceReader{maxParts: max(maxPartitions, 0)}
	p.in.buf = scratch
	p.Reset(r, version)
	return p
}

// Reset makes p read another body, from r at version, keeping its scratch
// buffer and limit. With the same ProduceRequest passed again, a reader
// that is reused allocates nothing once the slices have grown and the topic
// names repeat.
func (p *ProduceReader) Reset(r io.Reader, version int16) {
	if len(p.in.buf) < minScratch {
		p.in.buf = p.small[:]
	}
	p.in.reset(r)
	p.version = version
	hv, _ := HeaderVersion(0, version)
	p.flexible = hv == 2
	p.state = readFresh
	p.err = nil
	// The parser follows kmsg, not versionCaps: what versions reach it is policy.
	if maxV := apis[0].maxVersion; version < 0 || version > maxV {
		p.err = fmt.Errorf("read produce request: %w: v%d", ErrUnsupportedVersion, version)
	}
}

// Head reads the transactional id (v3+), acks and timeout into req. It
// reads once per Reset; a later call only returns the error, if any.
func (p *ProduceReader) Head(req *ProduceRequest) error {
	if p.err != nil || p.state != readFresh {
		return p.err
	}
	req.Version = p.version
	prev := req.TransactionalID
	req.TransactionalID = nil
	if p.version >= 3 {
		b, null, err := p.string("transactional id")
		if err != nil {
			return p.fail(err)
		}
		switch {
		case null:
		case prev != nil && *prev == string(b):
			// The same producer sends the same id every time: keep the
			// string instead of allocating it again.
			req.TransactionalID = prev
		default:
			id := string(b)
			req.TransactionalID = &id
		}
	}
	b, err := p.next("acks and timeout", 6)
	if err != nil {
		return p.fail(err)
	}
	req.Acks = int16(binary.BigEndian.Uint16(b))
	req.TimeoutMillis = int32(binary.BigEndian.Uint32(b[2:]))
	p.state = readHead
	return nil
}

// PeekProduceAcks finds the acks field at the start of a Produce body
// without a reader, so a proxy can learn whether a Produce expects a
// response from the bytes it already holds: acks is the first field in
// v0-2, after an int16-length transactional id in v3-8, after a compact
// (uvarint length+1) one from v9. ok is false while body is too short to
// hold it; a transactional id length no client sends is an error.
func PeekProduceAcks(body []byte, version int16) (acks int16, ok bool, err error) {
	off := 0
	switch {
	case version <= 2:
	case version <= 8:
		if len(body) < 2 {
			return 0, false, nil
		}
		n := int(int16(binary.BigEndian.Uint16(body)))
		if n < -1 {
			return 0, false, errBadTransactionalID
		}
		off = 2 + max(n, 0)
	default:
		u, w := binary.Uvarint(body)
		if w == 0 {
			return 0, false, nil
		}
		if w < 0 || u > 1<<15 {
			return 0, false, errBadTransactionalID
		}
		off = w + max(int(u)-1, 0)
	}
	if len(body) < off+2 {
		return 0, false, nil
	}
	return int16(binary.BigEndian.Uint16(body[off:])), true, nil
}

var errBadTransactionalID = errors.New("produce: malformed transactional id")

// Topics reads the topic array into req: each topic's name (v0-12) or
// TopicID (v13+) and each partition's index, skipping each partition's
// records through the scratch buffer, then the tagged fields of partitions,
// topics and the request. It calls Head first if that has not been done.
// It reuses req.Topics and each topic's Partitions. On success the whole
// body has been read: bytes after the request are ErrMalformedProduce.
func (p *ProduceReader) Topics(req *ProduceRequest) error {
	if err := p.Head(req); err != nil {
		return err
	}
	if p.state != readHead {
		return p.err
	}
	if err := p.topics(collector{req}); err != nil {
		return p.fail(err)
	}
	p.state = readDone
	return nil
}

// ProduceVisitor is told what a ProduceReader reads, as it reads it, so a
// caller can act on a request (answer it, say) without the reader holding
// its topics and partitions: ProduceReader.Walk keeps nothing per topic or
// partition, however many the request names. An error from a method stops
// the read and is returned by Walk (wrapped).
type ProduceVisitor interface {
	// Topics is called once, with the number of topics, before the first.
	Topics(n int) error
	// Topic is called for each topic: its name (v0-12; the bytes are
	// valid only during the call) or its TopicID (v13+).
	Topic(name []byte, id [16]byte) error
	// Partitions is called after Topic with the topic's partition count.
	Partitions(n int) error
	// Partition is called for each partition index of the current topic.
	Partition(index int32) error
}

// Walk reads the head into req like Head (if not done yet), then the topic
// array like Topics, but hands each topic and partition to v instead of
// collecting them in req.Topics, which it leaves alone.
func (p *ProduceReader) Walk(req *ProduceRequest, v ProduceVisitor) error {
	if err := p.Head(req); err != nil {
		return err
	}
	if p.state != readHead {
		return p.err
	}
	if err := p.topics(v); err != nil {
		return p.fail(err)
	}
	p.state = readDone
	return nil
}

// collector is the ProduceVisitor behind Topics: it fills req.Topics,
// reusing its slices and strings.
type collector struct{ req *ProduceRequest }

func (c collector) Topics(int) error {
	c.req.Topics = c.req.Topics[:0]
	return nil
}

func (c collector) Topic(name []byte, id [16]byte) error {
	req := c.req
	if len(req.Topics) < cap(req.Topics) {
		req.Topics = req.Topics[:len(req.Topics)+1]
	} else {
		req.Topics = append(req.Topics, ProduceTopic{})
	}
	t := &req.Topics[len(req.Topics)-1]
	t.Partitions = t.Partitions[:0]
	if t.Name != string(name) {
		t.Name = string(name)
	}
	t.TopicID = id
	return nil
}

func (collector) Partitions(int) error { return nil }

func (c collector) Partition(index int32) error {
	t := &c.req.Topics[len(c.req.Topics)-1]
	t.Partitions = append(t.Partitions, index)
	return nil
}

func (p *ProduceReader) topics(v ProduceVisitor) error {
	n, err := p.arrayLen("topic count")
	if err != nil {
		return err
	}
	if n > p.maxParts {
		return fmt.Errorf("%w: %d topics, limit %d", ErrTooManyPartitions, n, p.maxParts)
	}
	if err := v.Topics(n); err != nil {
		return err
	}
	total := 0
	for range n {
		var name []byte
		var id [16]byte
		if p.version >= 13 {
			b, err := p.next("topic id", 16)
			if err != nil {
				return err
			}
			id = [16]byte(b)
		} else {
			b, null, err := p.string("topic name")
			if err != nil {
				return err
			}
			if null {
				return malformed("topic name", "null")
			}
			name = b
		}
		if err := v.Topic(name, id); err != nil {
			return err
		}

		np, err := p.arrayLen("partition count")
		if err != nil {
			return err
		}
		if total += np; total > p.maxParts {
			return fmt.Errorf("%w: at least %d partitions, limit %d", ErrTooManyPartitions, total, p.maxParts)
		}
		if err := v.Partitions(np); err != nil {
			return err
		}
		for range np {
			b, err := p.next("partition index", 4)
			if err != nil {
				return err
			}
			if err := v.Partition(int32(binary.BigEndian.Uint32(b))); err != nil {
				return err
			}
			if err := p.skipRecords(); err != nil {
				return err
			}
			if err := p.skipTags("partition tags"); err != nil {
				return err
			}
		}
		if err := p.skipTags("topic tags"); err != nil {
			return err
		}
	}
	if err := p.skipTags("request tags"); err != nil {
		return err
	}
	switch end, err := p.in.atEOF(); {
	case err != nil:
		return err
	case !end:
		return malformed("end", "trailing bytes after the request")
	}
	return nil
}

// fail makes err sticky and gives it the operation and the sentinel: a body
// that ends early is malformed, a bad varint too; other read errors are the
// connection's, not the request's.
func (p *ProduceReader) fail(err error) error {
	switch {
	case errors.Is(err, ErrMalformedProduce), errors.Is(err, ErrTooManyPartitions):
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("%w: body ends early: %w (%v)", ErrMalformedProduce, io.ErrUnexpectedEOF, err)
	case errors.Is(err, errBadVarint):
		err = fmt.Errorf("%w: %w", ErrMalformedProduce, err)
	}
	p.err = fmt.Errorf("read produce request v%d: %w", p.version, err)
	return p.err
}

func malformed(what, why string) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformedProduce, what, why)
}

// wrap names the field being read when a read fails.
func wrap(what string, err error) error {
	return fmt.Errorf("%s: %w", what, err)
}

func (p *ProduceReader) next(what string, n int) ([]byte, error) {
	b, err := p.in.next(n)
	if err != nil {
		return nil, wrap(what, err)
	}
	return b, nil
}

func (p *ProduceReader) uvarint(what string) (uint32, error) {
	v, err := p.in.uvarint()
	if err != nil {
		return 0, wrap(what, err)
	}
	return v, nil
}

// fits checks a length against what is left of the body, when that is
// known, so that a lying length fails before it is read through.
func (p *ProduceReader) fits(what string, n int64) error {
	if rem := p.in.remaining(); rem >= 0 && n > rem {
		return malformed(what, fmt.Sprintf("length %d runs past the body (%d left)", n, rem))
	}
	return nil
}

// length reads a nullable length: int16 or int32 before v9, a compact
// uvarint (length+1, 0 for null) from v9. It returns -1 for null.
func (p *ProduceReader) length(what string, size int) (int64, error) {
	if p.flexible {
		u, err := p.uvarint(what)
		if err != nil {
			return 0, err
		}
		return int64(u) - 1, nil
	}
	b, err := p.next(what, size)
	if err != nil {
		return 0, err
	}
	var n int64
	if size == 2 {
		n = int64(int16(binary.BigEndian.Uint16(b)))
	} else {
		n = int64(int32(binary.BigEndian.Uint32(b)))
	}
	if n < -1 {
		return 0, malformed(what, fmt.Sprintf("length %d", n))
	}
	return n, nil
}

// string reads a (compact) nullable string; the bytes are valid until the
// next read.
func (p *ProduceReader) string(what string) (b []byte, null bool, err error) {
	n, err := p.length(what, 2)
	if err != nil {
		return nil, false, err
	}
	if n < 0 {
		return nil, true, nil
	}
	if n > maxStringLen {
		return nil, false, malformed(what, fmt.Sprintf("length %d over %d", n, maxStringLen))
	}
	if err := p.fits(what, n); err != nil {
		return nil, false, err
	}
	b, p.str, err = p.in.collect(p.str, int(n))
	if err != nil {
		return nil, false, wrap(what, err)
	}
	return b, false, nil
}

// arrayLen reads a non-nullable array length. Every element takes at least
// one byte, so a count over what is left of the body is malformed.
func (p *ProduceReader) arrayLen(what string) (int, error) {
	n, err := p.length(what, 4)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, malformed(what, "null array")
	}
	if n > math.MaxInt32 { // a compact length can say more than Kafka's int32 arrays hold
		return 0, malformed(what, fmt.Sprintf("length %d", n))
	}
	if err := p.fits(what, n); err != nil {
		return 0, err
	}
	return int(n), nil
}

func (p *ProduceReader) skipRecords() error {
	n, err := p.length("records", 4)
	if err != nil || n <= 0 {
		return err
	}
	if err := p.fits("records", n); err != nil {
		return err
	}
	return wrapIf("records", p.in.skip(n))
}

// skipTags skips tagged fields (flexible versions only): a uvarint count,
// then per field a uvarint tag, a uvarint length and the bytes.
func (p *ProduceReader) skipTags(what string) error {
	if !p.flexible {
		return nil
	}
	count, err := p.uvarint(what)
	if err != nil {
		return err
	}
	// A field takes at least two bytes.
	if err := p.fits(what, 2*int64(count)); err != nil {
		return err
	}
	for range count {
		if _, err := p.uvarint(what); err != nil {
			return err
		}
		size, err := p.uvarint(what)
		if err != nil {
			return err
		}
		if err := p.fits(what, int64(size)); err != nil {
			return err
		}
		if err := p.in.skip(int64(size)); err != nil {
			return wrap(what, err)
		}
	}
	return nil
}

func wrapIf(what string, err error) error {
	if err == nil {
		return nil
	}
	return wrap(what, err)
}
