package framing

import (
	"encoding/binary"
	"io"
)

// CodeMessageTooLarge is Kafka's MESSAGE_TOO_LARGE error code
// (kerr.MessageTooLarge.Code, which is a variable): the answer a producer
// does not retry, splitting its batch or failing the one record instead.
const CodeMessageTooLarge int16 = 10

// ProduceAnswer is a ProduceVisitor that writes, as a ProduceReader walks a
// Produce request, the response that fails every topic-partition with one
// error code: the bytes a broker would send, after the size prefix,
// without holding the request or the response. Its memory is a few dozen
// bytes whatever the request names, so the writer alone decides what the
// answer may cost (a writer over a bounded buffer can refuse to grow).
//
//	a := framing.NewProduceAnswer(w, version, correlationID, 10)
//	if err := reader.Walk(&req, a); err == nil { err = a.Finish() }
type ProduceAnswer struct {
	w        io.Writer
	version  int16
	flexible bool
	code     int16
	left     int // partitions of the current topic still to come
	buf      [64]byte
}

// NewProduceAnswer writes the response header to w and returns the visitor
// that writes the rest. The caller writes the size prefix (the bytes
// written, as an int32) in front.
func NewProduceAnswer(w io.Writer, version int16, correlationID int32, code int16) (*ProduceAnswer, error) {
	hv, _ := HeaderVersion(0, version)
	a := &ProduceAnswer{w: w, version: version, flexible: hv == 2, code: code}
	b := binary.BigEndian.AppendUint32(a.buf[:0], uint32(correlationID))
	if a.flexible {
		b = append(b, 0) // response header v1: no tagged fields
	}
	return a, a.write(b)
}

func (a *ProduceAnswer) write(b []byte) error {
	_, err := a.w.Write(b)
	return err
}

// arrayLen appends an array length: int32, or uvarint n+1 when flexible.
func (a *ProduceAnswer) arrayLen(b []byte, n int) []byte {
	if a.flexible {
		return binary.AppendUvarint(b, uint64(n)+1)
	}
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// Topics writes the topic count.
func (a *ProduceAnswer) Topics(n int) error {
	return a.write(a.arrayLen(a.buf[:0], n))
}

// Topic writes the topic's name (v0-12) or id (v13+).
func (a *ProduceAnswer) Topic(name []byte, id [16]byte) error {
	if a.version >= 13 {
		return a.write(id[:])
	}
	var b []byte
	if a.flexible {
		b = binary.AppendUvarint(a.buf[:0], uint64(len(name))+1)
	} else {
		b = binary.BigEndian.AppendUint16(a.buf[:0], uint16(len(name)))
	}
	if err := a.write(b); err != nil {
		return err
	}
	return a.write(name)
}

// Partitions writes the topic's partition count (and, for none, the end of
// the topic).
func (a *ProduceAnswer) Partitions(n int) error {
	a.left = n
	b := a.arrayLen(a.buf[:0], n)
	if n == 0 && a.flexible {
		b = append(b, 0) // no topic tags
	}
	return a.write(b)
}

// Partition writes one partition's answer: the error code and no offsets;
// after the topic's last partition, the end of the topic.
func (a *ProduceAnswer) Partition(index int32) error {
	b := binary.BigEndian.AppendUint32(a.buf[:0], uint32(index))
	b = binary.BigEndian.AppendUint16(b, uint16(a.code))
	b = binary.BigEndian.AppendUint64(b, ^uint64(0)) // base offset -1
	if a.version >= 2 {
		b = binary.BigEndian.AppendUint64(b, ^uint64(0)) // log append time -1
	}
	if a.version >= 5 {
		b = binary.BigEndian.AppendUint64(b, ^uint64(0)) // log start offset -1
	}
	if a.version >= 8 {
		b = a.arrayLen(b, 0) // no record errors
		if a.flexible {
			b = append(b, 0) // null error message
		} else {
			b = binary.BigEndian.AppendUint16(b, 0xffff)
		}
	}
	if a.flexible {
		b = append(b, 0) // no partition tags
		if a.left--; a.left == 0 {
			b = append(b, 0) // no topic tags
		}
	}
	return a.write(b)
}

// Finish writes what follows the topics: the throttle time (v1+, zero) and
// the response's tags (v9+, none).
func (a *ProduceAnswer) Finish() error {
	var b []byte
	if a.version >= 1 {
		b = binary.BigEndian.AppendUint32(a.buf[:0], 0)
	}
	if a.flexible {
		b = append(b, 0)
	}
	return a.write(b)
}
