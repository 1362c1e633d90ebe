package framing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ErrMalformedResponse is a response body that cannot be what it claims: an
// array count its remaining bytes cannot hold (count times the smallest
// element), a length that runs past the body, a bad uvarint.
var ErrMalformedResponse = errors.New("malformed response")

// ErrUnknownShape is a response ResponseCost does not know the shape of.
var ErrUnknownShape = errors.New("no shape known for this response")

// The shapes of the responses kafkaguard decodes to rewrite (Metadata,
// FindCoordinator, DescribeCluster, ApiVersions), as kmsg reads them: just
// enough to walk a body, check every count against the bytes left, and add
// up what kmsg's decode will allocate. kmsg itself only checks that a count
// does not exceed the bytes left (an element is at least a byte), so a 16 MiB
// body declaring 16M brokers of ~100 bytes each would make it allocate
// 1.6 GiB; checked against the smallest element here, the same body is
// refused before anything is decoded.

type kind uint8

const (
	fInt8 kind = iota
	fInt16
	fInt32
	fInt64
	fUUID
	fString     // a string kmsg copies (compact when flexible)
	fNullString // a nullable string, decoded to a *string
	fInt32s     // an array of int32
	fArray      // an array of elem
)

// field is one field of a shape, present in versions [from, to] (to < 0: no
// upper bound).
type field struct {
	kind     kind
	from, to int16
	elem     *shape
}

// shape is a struct on the wire; size is the bytes kmsg's Go struct for one
// element takes, charged per element of an array of it. flexible gives the
// first flexible version; a flexible struct ends with tagged fields.
type shape struct {
	fields []field
	size   int64
	addr   bool // an element is a broker address kafkaguard rewrites
}

func fld(k kind, from, to int16) field         { return field{kind: k, from: from, to: to} }
func arr(e *shape, from, to int16) field       { return field{kind: fArray, from: from, to: to, elem: e} }
func sizeOf[T any]() int64                     { var v T; return int64(unsafe.Sizeof(v)) }
func (fl field) in(v int16) bool               { return v >= fl.from && (fl.to < 0 || v <= fl.to) }
func newShape(size int64, fs ...field) *shape  { return &shape{fields: fs, size: size} }
func addrShape(size int64, fs ...field) *shape { s := newShape(size, fs...); s.addr = true; return s }

var (
	metadataBroker = addrShape(sizeOf[kmsg.MetadataResponseBroker](),
		fld(fInt32, 0, -1), fld(fString, 0, -1), fld(fInt32, 0, -1), fld(fNullString, 1, -1))
	metadataPartition = newShape(sizeOf[kmsg.MetadataResponseTopicPartition](),
		fld(fInt16, 0, -1), fld(fInt32, 0, -1), fld(fInt32, 0, -1), fld(fInt32, 7, -1),
		fld(fInt32s, 0, -1), fld(fInt32s, 0, -1), fld(fInt32s, 5, -1))
	metadataTopic = newShape(sizeOf[kmsg.MetadataResponseTopic](),
		fld(fInt16, 0, -1), fld(fNullString, 0, -1), fld(fUUID, 10, -1), fld(fInt8, 1, -1),
		arr(metadataPartition, 0, -1), fld(fInt32, 8, -1))
	metadataResponse = newShape(0,
		fld(fInt32, 3, -1), arr(metadataBroker, 0, -1), fld(fNullString, 2, -1), fld(fInt32, 1, -1),
		arr(metadataTopic, 0, -1), fld(fInt32, 8, 10), fld(fInt16, 13, -1))

	coordinator = addrShape(sizeOf[kmsg.FindCoordinatorResponseCoordinator](),
		fld(fString, 0, -1), fld(fInt32, 0, -1), fld(fString, 0, -1), fld(fInt32, 0, -1),
		fld(fInt16, 0, -1), fld(fNullString, 0, -1))
	findCoordinatorResponse = newShape(0,
		fld(fInt32, 1, -1), fld(fInt16, 0, 3), fld(fNullString, 1, 3), fld(fInt32, 0, 3), fld(fString, 0, 3),
		fld(fInt32, 0, 3), arr(coordinator, 4, -1))

	clusterBroker = addrShape(sizeOf[kmsg.DescribeClusterResponseBroker](),
		fld(fInt32, 0, -1), fld(fString, 0, -1), fld(fInt32, 0, -1), fld(fNullString, 0, -1), fld(fInt8, 2, -1))
	describeClusterResponse = newShape(0,
		fld(fInt32, 0, -1), fld(fInt16, 0, -1), fld(fNullString, 0, -1), fld(fInt8, 1, -1), fld(fString, 0, -1),
		fld(fInt32, 0, -1), arr(clusterBroker, 0, -1), fld(fInt32, 0, -1))

	apiKey = newShape(sizeOf[kmsg.ApiVersionsResponseApiKey](),
		fld(fInt16, 0, -1), fld(fInt16, 0, -1), fld(fInt16, 0, -1))
	apiVersionsResponse = newShape(0,
		fld(fInt16, 0, -1), arr(apiKey, 0, -1), fld(fInt32, 1, -1))
)

// responseShapes maps an API key to its response shape and first flexible
// version.
var responseShapes = map[int16]struct {
	s        *shape
	flexible int16
}{
	KeyMetadata:        {metadataResponse, 9},
	KeyFindCoordinator: {findCoordinatorResponse, 3},
	KeyDescribeCluster: {describeClusterResponse, 0},
	KeyAPIVersions:     {apiVersionsResponse, 3},
}

// Decoded structs are charged their Go size per element; strings their bytes
// plus a header, tagged fields a map entry plus their bytes times
// tagByteCost. kmsg decodes the known tags of ApiVersions (v3+: supported
// and finalized features) into arrays whose length it checks only against
// the tag's bytes at one byte an element, and each element is about 40
// bytes in Go: so every tag byte is charged as one such element.
const (
	stringCost  = 16
	tagCost     = 64
	tagByteCost = 48
	// respCostBase covers the top-level struct and slack.
	respCostBase = 1024
)

// ResponseCost walks the body of a key response at version (the bytes after
// the response header) without decoding it and returns an upper bound of
// the bytes kmsg's ReadFrom allocates for it, and how many broker address
// entries it holds. A count that its remaining bytes cannot hold at the
// smallest element size, or a length past the end, is
// ErrMalformedResponse; nothing is allocated by a count. Keys outside
// Metadata, FindCoordinator, DescribeCluster and ApiVersions are
// ErrUnknownShape.
func ResponseCost(key, version int16, body []byte) (cost int64, addrs int, err error) {
	rs, ok := responseShapes[key]
	if !ok {
		return 0, 0, fmt.Errorf("%w: key %d", ErrUnknownShape, key)
	}
	w := walker{b: body, v: version, flex: version >= rs.flexible, cost: respCostBase}
	if err := w.walk(rs.s); err != nil {
		return 0, 0, fmt.Errorf("%s v%d: %w", kmsg.NameForKey(key), version, err)
	}
	if key == KeyFindCoordinator && version <= 3 {
		w.addrs++ // the coordinator is the response itself
	}
	// Bytes after the response are left alone, as kmsg leaves them.
	return w.cost, w.addrs, nil
}

type walker struct {
	b     []byte
	off   int
	v     int16
	flex  bool
	cost  int64
	addrs int
}

func (w *walker) left() int { return len(w.b) - w.off }

func (w *walker) bad(what string, args ...any) error {
	return fmt.Errorf("%w: %s at byte %d", ErrMalformedResponse, fmt.Sprintf(what, args...), w.off)
}

func (w *walker) skip(n int) error {
	if n < 0 || n > w.left() {
		return w.bad("%d bytes needed, %d left", n, w.left())
	}
	w.off += n
	return nil
}

func (w *walker) uvarint() (uint64, error) {
	u, n := binary.Uvarint(w.b[w.off:])
	if n <= 0 || u > 1<<31 {
		return 0, w.bad("bad uvarint")
	}
	w.off += n
	return u, nil
}

// length reads a string or array length: int16 (strings) or int32 (arrays),
// or a compact uvarint length+1 when flexible; -1 is null.
func (w *walker) length(array bool) (int, error) {
	if w.flex {
		u, err := w.uvarint()
		return int(u) - 1, err
	}
	if array {
		if w.left() < 4 {
			return 0, w.bad("array length past the end")
		}
		n := int(int32(binary.BigEndian.Uint32(w.b[w.off:])))
		w.off += 4
		return n, nil
	}
	if w.left() < 2 {
		return 0, w.bad("string length past the end")
	}
	n := int(int16(binary.BigEndian.Uint16(w.b[w.off:])))
	w.off += 2
	return n, nil
}

// minSize is the fewest bytes one element of s takes on the wire.
func (w *walker) minSize(s *shape) int {
	n := 0
	lenSize, arrSize := 2, 4
	if w.flex {
		lenSize, arrSize = 1, 1
	}
	for _, fl := range s.fields {
		if !fl.in(w.v) {
			continue
		}
		switch fl.kind {
		case fInt8:
			n++
		case fInt16:
			n += 2
		case fInt32:
			n += 4
		case fInt64:
			n += 8
		case fUUID:
			n += 16
		case fString, fNullString:
			n += lenSize
		case fInt32s, fArray:
			n += arrSize
		}
	}
	if w.flex {
		n++ // tagged fields count
	}
	return n
}

func (w *walker) walk(s *shape) error {
	for _, fl := range s.fields {
		if !fl.in(w.v) {
			continue
		}
		var err error
		switch fl.kind {
		case fInt8:
			err = w.skip(1)
		case fInt16:
			err = w.skip(2)
		case fInt32:
			err = w.skip(4)
		case fInt64:
			err = w.skip(8)
		case fUUID:
			err = w.skip(16)
		case fString, fNullString:
			err = w.str(fl.kind == fNullString)
		case fInt32s:
			err = w.array(4, nil)
		case fArray:
			err = w.array(w.minSize(fl.elem), fl.elem)
		}
		if err != nil {
			return err
		}
	}
	if w.flex {
		return w.tags()
	}
	return nil
}

// alloc is what the Go allocator takes for an object of n bytes at most:
// size classes waste up to an eighth, and the smallest objects round up.
func alloc(n int64) int64 { return n + n/8 + 32 }

func (w *walker) str(nullable bool) error {
	n, err := w.length(false)
	if err != nil {
		return err
	}
	if n < 0 {
		if n == -1 && nullable {
			return nil
		}
		return w.bad("string length %d", n)
	}
	w.cost += alloc(stringCost + int64(n))
	return w.skip(n)
}

// array checks a count against the bytes left at min bytes an element, then
// walks the elements (of elem; nil for int32s).
func (w *walker) array(min int, elem *shape) error {
	n, err := w.length(true)
	if err != nil {
		return err
	}
	if n < -1 {
		return w.bad("array length %d", n)
	}
	if n <= 0 {
		return nil
	}
	if int64(n)*int64(min) > int64(w.left()) {
		return w.bad("%d elements of at least %d bytes in %d bytes", n, min, w.left())
	}
	if elem == nil {
		w.cost += alloc(int64(n) * 4)
		return w.skip(n * 4)
	}
	w.cost += alloc(int64(n) * elem.size)
	if elem.addr {
		w.addrs += n
	}
	for range n {
		if err := w.walk(elem); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) tags() error {
	n, err := w.uvarint()
	if err != nil {
		return err
	}
	if n*2 > uint64(w.left()) {
		return w.bad("%d tagged fields in %d bytes", n, w.left())
	}
	for range n {
		if _, err := w.uvarint(); err != nil {
			return err
		}
		size, err := w.uvarint()
		if err != nil {
			return err
		}
		w.cost += alloc(tagCost + int64(size)*tagByteCost)
		if err := w.skip(int(size)); err != nil {
			return err
		}
	}
	return nil
}
