package framing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func FuzzParseRequestHeader(f *testing.F) {
	for _, v := range []int16{0, 3, 9, 13} {
		frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("cid")).AppendRequest(nil, &kmsg.ProduceRequest{Version: v}, 7)
		f.Add(frame[SizeLen:], int32(len(frame)-SizeLen), uint16(100))
	}
	f.Add(hdr(0, 9, 1, cat(idLen(-1), []byte{2, 0, 3, 'a', 'b', 'c', 7, 0})...), int32(100), uint16(0))
	f.Add(hdr(7, 0, 1), int32(8), uint16(0))
	f.Add(hdr(3, 4, 1, idLen(200)...), int32(1000), uint16(10))
	f.Fuzz(func(t *testing.T, b []byte, frameLen int32, maxID uint16) {
		h, err := ParseRequestHeader(b, frameLen, int(maxID))
		if err != nil {
			return
		}
		if h.Len > len(b) || int64(h.Len) > int64(frameLen) || h.Len > maxHeaderLen(int(maxID)) || h.Len < MinRequestSize {
			t.Fatalf("Len %d: buffer %d, frame %d, maxHeaderLen %d", h.Len, len(b), frameLen, maxHeaderLen(int(maxID)))
		}
		if len(h.ClientID) > int(maxID) {
			t.Fatalf("client id of %d bytes over %d", len(h.ClientID), maxID)
		}
		if h.ClientID != nil && !bytes.Equal(h.ClientID, b[10:10+len(h.ClientID)]) {
			t.Fatal("client id is not the bytes after its length")
		}
		// Any shorter prefix is merely incomplete, and the header alone
		// parses the same.
		for i := range h.Len {
			if _, err := ParseRequestHeader(b[:i], frameLen, int(maxID)); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("prefix %d of header %d: %v", i, h.Len, err)
			}
		}
		h2, err := ParseRequestHeader(b[:h.Len], frameLen, int(maxID))
		if err != nil || h2.Len != h.Len || !bytes.Equal(h2.ClientID, h.ClientID) {
			t.Fatalf("header alone: %+v, %v; whole: %+v", h2, err, h)
		}
	})
}

func FuzzResponseHeaderLen(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1}, int16(3), int16(8))
	f.Add([]byte{0, 0, 0, 1, 0}, int16(0), int16(13))
	f.Add([]byte{0, 0, 0, 1, 1, 4, 2, 'a', 'b'}, int16(0), int16(9))
	f.Add([]byte{0, 0, 0, 1}, int16(18), int16(4))
	f.Fuzz(func(t *testing.T, b []byte, key, version int16) {
		n, err := ResponseHeaderLen(b, key, version)
		if err != nil {
			return
		}
		if n < 4 || n > len(b) || n > 4+MaxTaggedLen {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		for i := range n {
			if _, err := ResponseHeaderLen(b[:i], key, version); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("prefix %d of header %d: %v", i, n, err)
			}
		}
	})
}

// FuzzProduceReader checks that the reader never panics, never grows its
// memory by a declared length, and that whatever it accepts kmsg reads the
// same way.
func FuzzProduceReader(f *testing.F) {
	for _, v := range []int16{0, 2, 3, 8, 9, 12, 13} {
		for _, c := range produceCases {
			f.Add(c.body(v), uint8(v), false, false)
			f.Add(c.body(v), uint8(v), true, true)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, version uint8, limited, small bool) {
		v := int16(version % 14)
		var r io.Reader = bytes.NewReader(body)
		if limited {
			r = &io.LimitedReader{R: r, N: int64(len(body))}
		}
		scratch := make([]byte, 32<<10)
		if small {
			scratch = scratch[:64]
		}
		pr := NewProduceReader(r, v, scratch, 1000)
		var got ProduceRequest
		err := pr.Topics(&got)

		// Memory follows the bytes that arrived, not the lengths declared.
		bound := 2*len(body) + 64
		parts := 0
		for _, t := range got.Topics {
			parts += cap(t.Partitions)
		}
		if cap(got.Topics) > bound || parts > bound || cap(pr.str) > bound {
			t.Fatalf("%d body bytes grew %d topics, %d partitions, %d string bytes",
				len(body), cap(got.Topics), parts, cap(pr.str))
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedProduce) && !errors.Is(err, ErrTooManyPartitions) {
				t.Fatalf("error %v is neither malformed nor too many partitions", err)
			}
			return
		}

		kreq := kmsg.NewPtrProduceRequest()
		kreq.Version = v
		if err := kreq.ReadFrom(body); err != nil {
			t.Fatalf("accepted a body kmsg rejects: %v", err)
		}
		want := ProduceRequest{Version: v, TransactionalID: kreq.TransactionID, Acks: kreq.Acks, TimeoutMillis: kreq.TimeoutMillis}
		for _, kt := range kreq.Topics {
			pt := ProduceTopic{Name: kt.Topic, TopicID: kt.TopicID}
			for _, kp := range kt.Partitions {
				pt.Partitions = append(pt.Partitions, kp.Partition)
			}
			want.Topics = append(want.Topics, pt)
		}
		if d := diffProduce(got, want); d != "" {
			t.Fatalf("differs from kmsg: %s", d)
		}
	})
}

// BenchmarkParseRequestHeader parses a Produce v9 header (flexible, with a
// client id) from a kmsg-built frame.
func BenchmarkParseRequestHeader(b *testing.B) {
	for _, v := range []int16{3, 9} {
		frame := kmsg.NewRequestFormatter(kmsg.FormatterClientID("producer-1")).AppendRequest(nil, &kmsg.ProduceRequest{Version: v}, 42)
		body := frame[SizeLen:]
		size := int32(binary.BigEndian.Uint32(frame))
		b.Run(fmt.Sprintf("Produce v%d", v), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h, err := ParseRequestHeader(body, size, 255)
				if err != nil || h.CorrelationID != 42 {
					b.Fatal(h, err)
				}
			}
		})
	}
}

// PeekProduceAcks agrees with the framing Produce reader on every body the
// reader accepts, and never panics.
func FuzzPeekProduceAcks(f *testing.F) {
	for v := int16(0); v <= 13; v++ {
		req := kmsg.NewPtrProduceRequest()
		req.Version = v
		req.Acks = int16(v%3) - 1
		if v%2 == 0 {
			id := "txn"
			req.TransactionID = &id
		}
		f.Add(v, req.AppendTo(nil))
	}
	f.Fuzz(func(t *testing.T, version int16, body []byte) {
		version = ((version % 14) + 14) % 14
		acks, ok, err := PeekProduceAcks(body, version)
		var want ProduceRequest
		r := NewProduceReader(bytes.NewReader(body), version, make([]byte, 64), 16)
		if rerr := r.Head(&want); rerr == nil {
			if err != nil || !ok {
				t.Fatalf("v%d: reader read acks %d, peek said ok=%v err=%v", version, want.Acks, ok, err)
			}
			if acks != want.Acks {
				t.Fatalf("v%d: peek acks %d, reader %d", version, acks, want.Acks)
			}
		}
	})
}
