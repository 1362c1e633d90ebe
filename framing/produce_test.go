package framing

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// recordBatch returns a real v2 record batch carrying one record.
func recordBatch(value string) []byte {
	rec := kmsg.Record{Value: []byte(value)}
	recs := rec.AppendTo(nil)
	b := kmsg.RecordBatch{
		Magic:      2,
		NumRecords: 1,
		ProducerID: -1,
		Records:    recs,
	}
	b.Length = int32(len(b.AppendTo(nil)) - 12)
	return b.AppendTo(nil)
}

type partSpec struct {
	index   int32
	records []byte
}

type topicSpec struct {
	name  string
	id    [16]byte
	parts []partSpec
}

// produceCase is a request built with kmsg, with what a reader should
// extract from it.
type produceCase struct {
	name    string
	txn     *string
	acks    int16
	timeout int32
	topics  []topicSpec
	tags    bool // set unknown tags everywhere (flexible versions)
}

func (c produceCase) request(version int16) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = version
	req.TransactionID = c.txn
	req.Acks = c.acks
	req.TimeoutMillis = c.timeout
	for _, ts := range c.topics {
		t := kmsg.NewProduceRequestTopic()
		t.Topic = ts.name
		t.TopicID = ts.id
		for _, ps := range ts.parts {
			p := kmsg.NewProduceRequestTopicPartition()
			p.Partition = ps.index
			p.Records = ps.records
			if c.tags {
				p.UnknownTags.Set(3, []byte("partition tag"))
			}
			t.Partitions = append(t.Partitions, p)
		}
		if c.tags {
			t.UnknownTags.Set(1, []byte("topic"))
			t.UnknownTags.Set(200, bytes.Repeat([]byte{'T'}, 300))
		}
		req.Topics = append(req.Topics, t)
	}
	if c.tags {
		req.UnknownTags.Set(9, []byte("request tag"))
	}
	return req
}

func (c produceCase) body(version int16) []byte { return c.request(version).AppendTo(nil) }

func (c produceCase) want(version int16) ProduceRequest {
	w := ProduceRequest{Version: version, Acks: c.acks, TimeoutMillis: c.timeout}
	if version >= 3 {
		w.TransactionalID = c.txn
	}
	for _, ts := range c.topics {
		t := ProduceTopic{}
		if version >= 13 {
			t.TopicID = ts.id
		} else {
			t.Name = ts.name
		}
		for _, ps := range ts.parts {
			t.Partitions = append(t.Partitions, ps.index)
		}
		w.Topics = append(w.Topics, t)
	}
	return w
}

// diffProduce describes how got differs from want, or returns "".
func diffProduce(got, want ProduceRequest) string {
	switch {
	case got.Version != want.Version:
		return fmt.Sprintf("version %d, want %d", got.Version, want.Version)
	case (got.TransactionalID == nil) != (want.TransactionalID == nil):
		return fmt.Sprintf("transactional id %v, want %v", got.TransactionalID, want.TransactionalID)
	case got.TransactionalID != nil && *got.TransactionalID != *want.TransactionalID:
		return fmt.Sprintf("transactional id %q, want %q", *got.TransactionalID, *want.TransactionalID)
	case got.Acks != want.Acks || got.TimeoutMillis != want.TimeoutMillis:
		return fmt.Sprintf("acks %d timeout %d, want %d %d", got.Acks, got.TimeoutMillis, want.Acks, want.TimeoutMillis)
	case len(got.Topics) != len(want.Topics):
		return fmt.Sprintf("%d topics, want %d", len(got.Topics), len(want.Topics))
	}
	for i, g := range got.Topics {
		w := want.Topics[i]
		if g.Name != w.Name || g.TopicID != w.TopicID || fmt.Sprint(g.Partitions) != fmt.Sprint(w.Partitions) {
			return fmt.Sprintf("topic %d: %q %x %v, want %q %x %v", i, g.Name, g.TopicID, g.Partitions, w.Name, w.TopicID, w.Partitions)
		}
	}
	return ""
}

var produceCases = []produceCase{
	{
		name: "several topics and partitions", txn: kmsg.StringPtr("txn-1"), acks: -1, timeout: 30000,
		topics: []topicSpec{
			{name: "orders", id: [16]byte{1, 2, 3}, parts: []partSpec{{0, recordBatch("a")}, {7, recordBatch("bb")}, {2, nil}}},
			{name: "payments", id: [16]byte{15: 9}, parts: []partSpec{{1, []byte("any bytes will do")}, {3, []byte{}}}},
			{name: "empty", id: [16]byte{4}},
		},
	},
	{
		name: "null transactional id, acks 0", acks: 0, timeout: 1,
		topics: []topicSpec{{name: "t", id: [16]byte{0xff}, parts: []partSpec{{0, recordBatch(strings.Repeat("v", 5000))}}}},
	},
	{
		name: "long names through a small scratch", txn: kmsg.StringPtr(strings.Repeat("x", 500)), acks: 1, timeout: 5,
		topics: []topicSpec{{name: strings.Repeat("n", 1000), id: [16]byte{7}, parts: []partSpec{{5, nil}}}},
	},
	{
		name: "unknown tags everywhere", txn: kmsg.StringPtr(""), acks: 1, timeout: 100, tags: true,
		topics: []topicSpec{{name: "tagged", id: [16]byte{3}, parts: []partSpec{{0, recordBatch("r")}, {1, nil}}}},
	},
	{name: "no topics", acks: 1, timeout: 2},
}

// readers wrap a body the ways a connection might deliver it.
var readers = []struct {
	name string
	wrap func([]byte) io.Reader
}{
	{"plain", func(b []byte) io.Reader { return bytes.NewReader(b) }},
	{"limited", func(b []byte) io.Reader {
		// Bytes of the next frame follow; the reader must not see them.
		return &io.LimitedReader{R: bytes.NewReader(append(bytes.Clone(b), 0, 0, 0, 9)), N: int64(len(b))}
	}},
	{"one byte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
	{"data with EOF", func(b []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(b)) }},
	{"half", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
}

var scratches = []struct {
	name string
	size int
}{{"nil", 0}, {"64B", 64}, {"32KiB", 32 << 10}}

func TestProduceReader(t *testing.T) {
	for v := int16(0); v <= 13; v++ {
		for _, c := range produceCases {
			body := c.body(v)
			want := c.want(v)
			for _, s := range scratches {
				for _, r := range readers {
					t.Run(fmt.Sprintf("v%d/%s/%s/%s", v, c.name, s.name, r.name), func(t *testing.T) {
						pr := NewProduceReader(r.wrap(body), v, make([]byte, s.size), 100)
						var got ProduceRequest
						if err := pr.Head(&got); err != nil {
							t.Fatalf("Head: %v", err)
						}
						if got.Acks != c.acks || got.TimeoutMillis != c.timeout {
							t.Fatalf("after Head: acks %d timeout %d, want %d %d", got.Acks, got.TimeoutMillis, c.acks, c.timeout)
						}
						if err := pr.Topics(&got); err != nil {
							t.Fatalf("Topics: %v", err)
						}
						if d := diffProduce(got, want); d != "" {
							t.Fatal(d)
						}
						// Calling again reads nothing more and changes nothing.
						if err := pr.Topics(&got); err != nil {
							t.Fatalf("second Topics: %v", err)
						}
						if d := diffProduce(got, want); d != "" {
							t.Fatalf("after second Topics: %s", d)
						}
					})
				}
			}
		}
	}
}

// TestProduceReaderReset reuses one reader and one request across every
// version and case, so slices shrink, grow and names change.
func TestProduceReaderReset(t *testing.T) {
	pr := NewProduceReader(nil, 0, make([]byte, 64), 100)
	var got ProduceRequest
	for round := range 2 {
		for v := int16(0); v <= 13; v++ {
			for _, c := range produceCases {
				pr.Reset(bytes.NewReader(c.body(v)), v)
				if err := pr.Topics(&got); err != nil {
					t.Fatalf("round %d v%d %s: %v", round, v, c.name, err)
				}
				if d := diffProduce(got, c.want(v)); d != "" {
					t.Fatalf("round %d v%d %s: %s", round, v, c.name, d)
				}
			}
		}
	}
}

func TestProduceReaderTopicsWithoutHead(t *testing.T) {
	c := produceCases[0]
	var got ProduceRequest
	if err := NewProduceReader(bytes.NewReader(c.body(5)), 5, nil, 100).Topics(&got); err != nil {
		t.Fatal(err)
	}
	if d := diffProduce(got, c.want(5)); d != "" {
		t.Fatal(d)
	}
}

func TestProduceReaderTruncated(t *testing.T) {
	for v := int16(0); v <= 13; v++ {
		for _, c := range produceCases {
			body := c.body(v)
			for _, r := range readers[:2] {
				t.Run(fmt.Sprintf("v%d/%s/%s", v, c.name, r.name), func(t *testing.T) {
					pr := NewProduceReader(nil, v, make([]byte, 64), 100)
					var got ProduceRequest
					for n := range len(body) {
						pr.Reset(r.wrap(body[:n]), v)
						err := pr.Topics(&got)
						if !errors.Is(err, ErrMalformedProduce) {
							t.Fatalf("%d of %d bytes: err = %v, want ErrMalformedProduce", n, len(body), err)
						}
						if r.name == "plain" && !errors.Is(err, io.ErrUnexpectedEOF) {
							t.Fatalf("%d of %d bytes: err = %v, want io.ErrUnexpectedEOF too", n, len(body), err)
						}
						if err2 := pr.Topics(&got); err2 != err {
							t.Fatalf("error not sticky: %v then %v", err, err2)
						}
					}
					pr.Reset(r.wrap(append(bytes.Clone(body), 0)), v)
					if err := pr.Topics(&got); !errors.Is(err, ErrMalformedProduce) {
						t.Fatalf("trailing byte: err = %v, want ErrMalformedProduce", err)
					}
				})
			}
		}
	}
}

// be builds big-endian bytes from a mix of int16, int32, bytes and strings.
func be(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int16:
			b = binary.BigEndian.AppendUint16(b, uint16(p))
		case int32:
			b = binary.BigEndian.AppendUint32(b, uint32(p))
		case []byte:
			b = append(b, p...)
		case string:
			b = append(b, p...)
		default:
			panic(fmt.Sprintf("be: %T", p))
		}
	}
	return b
}

func TestProduceReaderMalformed(t *testing.T) {
	head := be(int16(1), int32(1000)) // acks, timeout
	tests := []struct {
		name    string
		version int16
		body    []byte
		limited bool
		want    error
		msg     string // a part of the error text: the check that failed
	}{
		{"null topic array", 0, be(head, int32(-1)), false, ErrMalformedProduce, "topic count: null array"},
		{"topic count past the body", 0, be(head, int32(1000000)), true, ErrMalformedProduce, "topic count: length 1000000 runs past"},
		{"null topic name", 0, be(head, int32(1), int16(-1)), false, ErrMalformedProduce, "topic name: null"},
		{"topic name length -2", 0, be(head, int32(1), int16(-2)), false, ErrMalformedProduce, "topic name: length -2"},
		{"topic name past the body", 0, be(head, int32(1), int16(3000), "ab"), true, ErrMalformedProduce, "topic name: length 3000 runs past"},
		{"null partition array", 0, be(head, int32(1), int16(1), "t", int32(-1)), false, ErrMalformedProduce, "partition count: null array"},
		{"records length -2", 0, be(head, int32(1), int16(1), "t", int32(1), int32(0), int32(-2)), false, ErrMalformedProduce, "records: length -2"},
		{"records past the body", 2, be(head, int32(1), int16(1), "t", int32(1), int32(0), int32(1<<30), "abc"), true, ErrMalformedProduce, "records: length 1073741824 runs past"},
		{"records past the body, unbounded", 2, be(head, int32(1), int16(1), "t", int32(1), int32(0), int32(1<<30), "abc"), false, ErrMalformedProduce, "records: EOF"},
		{"transactional id length -2", 3, be(int16(-2), head, int32(0)), false, ErrMalformedProduce, "transactional id: length -2"},
		{"compact topic name over 32767", 9, be([]byte{0}, head, []byte{2, 0xc2, 0xb8, 0x02}, "abc"), false, ErrMalformedProduce, "length 40001 over 32767"},
		{"compact null topic array", 9, be([]byte{0}, head, []byte{0}), false, ErrMalformedProduce, "topic count: null array"},
		{"compact null partition array", 9, be([]byte{0}, head, []byte{2, 2}, "t", []byte{0}), false, ErrMalformedProduce, "partition count: null array"},
		{"bad uvarint in request tags", 9, be([]byte{0}, head, []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff}), false, ErrMalformedProduce, "request tags: bad uvarint"},
		{"uvarint over 32 bits in request tags", 9, be([]byte{0}, head, []byte{1, 0xff, 0xff, 0xff, 0xff, 0x10}), false, ErrMalformedProduce, "request tags: bad uvarint"},
		{"request tag past the body", 9, be([]byte{0}, head, []byte{1, 1, 0, 0x80, 0x80, 0x04}), true, ErrMalformedProduce, "request tags: length 65536 runs past"},
		{"tag count past the body", 9, be([]byte{0}, head, []byte{1, 0x80, 0x80, 0x04}), true, ErrMalformedProduce, "request tags: length 131072 runs past"},
		{"too many topics", 0, be(head, int32(11)), false, ErrTooManyPartitions, "11 topics"},
		{"too many partitions", 13, be([]byte{0}, head, []byte{2}, make([]byte, 16), []byte{12}), false, ErrTooManyPartitions, "at least 11 partitions"},
		{"version 14", 14, be([]byte{0}, head, []byte{1, 0}), false, ErrUnsupportedVersion, "v14"},
		{"version -1", -1, be(head, int32(0)), false, ErrUnsupportedVersion, "v-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r io.Reader = bytes.NewReader(tt.body)
			if tt.limited {
				r = &io.LimitedReader{R: r, N: int64(len(tt.body))}
			}
			var got ProduceRequest
			err := NewProduceReader(r, tt.version, make([]byte, 64), 10).Topics(&got)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(fmt.Sprint(err), tt.msg) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.msg)
			}
		})
	}
}

func TestProduceReaderPartitionLimit(t *testing.T) {
	twoByThree := produceCase{acks: 1, topics: []topicSpec{
		{name: "a", parts: []partSpec{{0, nil}, {1, nil}, {2, nil}}},
		{name: "b", parts: []partSpec{{0, nil}, {1, nil}, {2, nil}}},
	}}
	threeEmpty := produceCase{acks: 1, topics: []topicSpec{{name: "a"}, {name: "b"}, {name: "c"}}}
	tests := []struct {
		name  string
		c     produceCase
		limit int
		want  error
	}{
		{"six partitions, limit 6", twoByThree, 6, nil},
		{"six partitions, limit 5", twoByThree, 5, ErrTooManyPartitions},
		{"three empty topics, limit 3", threeEmpty, 3, nil},
		{"three empty topics, limit 2", threeEmpty, 2, ErrTooManyPartitions},
		{"no topics, limit 0", produceCase{}, 0, nil},
		{"one empty topic, limit 0", produceCase{topics: []topicSpec{{name: "a"}}}, 0, ErrTooManyPartitions},
	}
	for _, tt := range tests {
		for _, v := range []int16{0, 9, 13} {
			t.Run(fmt.Sprintf("%s/v%d", tt.name, v), func(t *testing.T) {
				var got ProduceRequest
				err := NewProduceReader(bytes.NewReader(tt.c.body(v)), v, nil, tt.limit).Topics(&got)
				if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
			})
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestProduceReaderReadError(t *testing.T) {
	body := produceCases[0].body(9)
	r := io.MultiReader(bytes.NewReader(body[:20]), errReader{os.ErrDeadlineExceeded})
	pr := NewProduceReader(r, 9, make([]byte, 64), 100)
	var got ProduceRequest
	err := pr.Topics(&got)
	if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrMalformedProduce) {
		t.Fatalf("err = %v, want the read error and not ErrMalformedProduce", err)
	}
	if err2 := pr.Topics(&got); err2 != err {
		t.Fatalf("error not sticky: %v then %v", err, err2)
	}

	pr.Reset(errReader{nil}, 9) // a reader that never makes progress
	if err := pr.Head(&got); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

func TestProduceReaderNoAllocAfterReset(t *testing.T) {
	for _, v := range []int16{2, 8, 9, 13} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			body := produceCases[0].body(v)
			br := bytes.NewReader(body)
			lr := &io.LimitedReader{}
			pr := NewProduceReader(nil, v, make([]byte, 64), 100)
			var req ProduceRequest
			run := func() {
				br.Reset(body)
				*lr = io.LimitedReader{R: br, N: int64(len(body))}
				pr.Reset(lr, v)
				if err := pr.Topics(&req); err != nil {
					t.Fatal(err)
				}
			}
			run() // grow the slices, intern the names
			if allocs := testing.AllocsPerRun(50, run); allocs != 0 {
				t.Fatalf("%v allocations per reuse", allocs)
			}
		})
	}
}

// benchBody is a Produce body of about 1 MiB: one topic, three partitions,
// each a record batch of about 350 KB.
func benchBody(version int16) []byte {
	c := produceCase{acks: -1, timeout: 30000, txn: kmsg.StringPtr("bench-txn"), topics: []topicSpec{{
		name: "bench", id: [16]byte{1},
		parts: []partSpec{
			{0, recordBatch(strings.Repeat("a", 349<<10))},
			{1, recordBatch(strings.Repeat("b", 349<<10))},
			{2, recordBatch(strings.Repeat("c", 349<<10))},
		},
	}}}
	return c.body(version)
}

func BenchmarkProduceReader(b *testing.B) {
	for _, v := range []int16{3, 9, 13} {
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			body := benchBody(v)
			br := bytes.NewReader(body)
			lr := &io.LimitedReader{}
			pr := NewProduceReader(nil, v, make([]byte, 32<<10), 100)
			var req ProduceRequest
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				br.Reset(body)
				*lr = io.LimitedReader{R: br, N: int64(len(body))}
				pr.Reset(lr, v)
				if err := pr.Topics(&req); err != nil {
					b.Fatal(err)
				}
			}
			if len(req.Topics) != 1 || len(req.Topics[0].Partitions) != 3 {
				b.Fatalf("read %+v", req)
			}
		})
	}
}

func TestPeekProduceAcks(t *testing.T) {
	for v := int16(0); v <= 13; v++ {
		for _, txn := range []*string{nil, ptr(""), ptr("a-transactional-id")} {
			req := kmsg.NewPtrProduceRequest()
			req.Version, req.Acks, req.TransactionID = v, -1, txn
			if v < 3 {
				req.TransactionID = nil
			}
			body := req.AppendTo(nil)
			acks, ok, err := PeekProduceAcks(body, v)
			if err != nil || !ok || acks != -1 {
				t.Errorf("v%d txn %v: acks %d ok %v err %v", v, txn, acks, ok, err)
			}
			// Every shorter prefix that ends before acks is incomplete, never wrong.
			for n := range len(body) {
				if a, ok, err := PeekProduceAcks(body[:n], v); err != nil || ok && a != -1 {
					t.Fatalf("v%d prefix %d: acks %d ok %v err %v", v, n, a, ok, err)
				}
			}
		}
	}
}

func ptr(s string) *string { return &s }
