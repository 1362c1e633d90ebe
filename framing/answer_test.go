package framing

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// The answer ProduceAnswer streams while the request is walked is, byte for
// byte, the one AppendProduceError builds from the collected request, at
// every version (and kmsg reads that one; see TestAppendProduceError).
func TestProduceAnswerMatchesappendProduceError(t *testing.T) {
	for v := int16(0); v <= 13; v++ {
		for _, c := range produceCases {
			t.Run(fmt.Sprintf("v%d/%s", v, c.name), func(t *testing.T) {
				req := c.want(v)
				want := appendProduceError(nil, 77, &req, 10)[SizeLen:]
				var got bytes.Buffer
				a, err := NewProduceAnswer(&got, v, 77, 10)
				if err != nil {
					t.Fatal(err)
				}
				var head ProduceRequest
				r := NewProduceReader(bytes.NewReader(c.body(v)), v, make([]byte, 64), 1000)
				if err := r.Walk(&head, a); err != nil {
					t.Fatal(err)
				}
				if err := a.Finish(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Fatalf("streamed answer\n%x\nwant\n%x", got.Bytes(), want)
				}
				if head.Acks != c.acks || len(head.Topics) != 0 {
					t.Errorf("head: acks %d, %d topics collected; want acks %d and none", head.Acks, len(head.Topics), c.acks)
				}
			})
		}
	}
}

// limitWriter fails once more than n bytes are written.
type limitWriter struct{ n int }

var errFull = errors.New("full")

func (w *limitWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errFull
	}
	return len(p), nil
}

// A writer that refuses to grow stops the walk at once with its error: the
// answer to a request naming a million partitions costs no more than the
// writer allows, and the rest of the request is not read.
func TestProduceAnswerStopsAtWriterLimit(t *testing.T) {
	c := produceCase{name: "many", acks: -1, topics: []topicSpec{{name: "t", parts: make([]partSpec, 100000)}}}
	body := c.body(3)
	a, err := NewProduceAnswer(&limitWriter{n: 1000}, 3, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	r := NewProduceReader(bytes.NewReader(body), 3, make([]byte, 64), 1<<30)
	var head ProduceRequest
	if err := r.Walk(&head, a); !errors.Is(err, errFull) {
		t.Fatalf("walk: %v, want the writer's error", err)
	}
}

// For every body the reader accepts, the streamed answer is AppendProduceError's.
func FuzzProduceAnswer(f *testing.F) {
	for v := int16(0); v <= 13; v++ {
		for _, c := range produceCases {
			f.Add(v, c.body(v))
		}
	}
	f.Fuzz(func(t *testing.T, version int16, body []byte) {
		version = ((version % 14) + 14) % 14
		var req ProduceRequest
		if err := NewProduceReader(bytes.NewReader(body), version, nil, 1000).Topics(&req); err != nil {
			return
		}
		want := appendProduceError(nil, 5, &req, 10)[SizeLen:]
		var got bytes.Buffer
		a, _ := NewProduceAnswer(&got, version, 5, 10)
		var head ProduceRequest
		if err := NewProduceReader(bytes.NewReader(body), version, nil, 1000).Walk(&head, a); err != nil {
			t.Fatalf("Topics accepted the body, Walk: %v", err)
		}
		a.Finish()
		if !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("v%d: streamed answer differs from AppendProduceError", version)
		}
	})
}
