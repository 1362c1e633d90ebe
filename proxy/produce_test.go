package proxy

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/framing"
)

// peekProduceAcks agrees with the framing Produce reader on every body the
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
		acks, ok, err := peekProduceAcks(body, version)
		var want framing.ProduceRequest
		r := framing.NewProduceReader(bytes.NewReader(body), version, make([]byte, 64), 16)
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

func TestPeekProduceAcks(t *testing.T) {
	for v := int16(0); v <= 13; v++ {
		for _, txn := range []*string{nil, ptr(""), ptr("a-transactional-id")} {
			req := kmsg.NewPtrProduceRequest()
			req.Version, req.Acks, req.TransactionID = v, -1, txn
			if v < 3 {
				req.TransactionID = nil
			}
			body := req.AppendTo(nil)
			acks, ok, err := peekProduceAcks(body, v)
			if err != nil || !ok || acks != -1 {
				t.Errorf("v%d txn %v: acks %d ok %v err %v", v, txn, acks, ok, err)
			}
			// Every shorter prefix that ends before acks is incomplete, never wrong.
			for n := range len(body) {
				if a, ok, err := peekProduceAcks(body[:n], v); err != nil || ok && a != -1 {
					t.Fatalf("v%d prefix %d: acks %d ok %v err %v", v, n, a, ok, err)
				}
			}
		}
	}
}

func ptr(s string) *string { return &s }
