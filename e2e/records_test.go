package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
)

// rec is one keyed record as produced and as consumed back. A client
// program that reports where it read a record (kafkajs) sets At.
type rec struct {
	Key, Value []byte
	At         *logPos
}

// logPos is a record's place in the log: partition and offset.
type logPos struct {
	Partition int32
	Offset    int64
}

// genRecords makes n records with unique keys "prefix-i" and random values of
// 0..maxLen bytes. text keeps values to letters and digits, for kcat's line format.
func genRecords(seed uint64, prefix string, n, maxLen int, text bool) []rec {
	r := rand.New(rand.NewPCG(seed, 0x6b67))
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	out := make([]rec, n)
	for i := range out {
		v := make([]byte, r.IntN(maxLen+1))
		for j := range v {
			if text {
				v[j] = alnum[r.IntN(len(alnum))]
			} else {
				v[j] = byte(r.Uint32())
			}
		}
		if text && len(v) == 0 {
			v = []byte("x") // kcat cannot tell an empty value from a null one in its output
		}
		out[i] = rec{Key: fmt.Appendf(nil, "%s-%06d", prefix, i), Value: v}
	}
	return out
}

// sameRecords checks that got holds exactly want, each once, byte for byte,
// in any order (records spread over partitions).
//
// One exception, for clients that report where they read each record
// (kafkajs): the same record read again at the same partition and offset is
// the client fetching one log position twice, which a consumer may; it is
// logged and not counted. A key at two places in the log (a Produce applied
// twice, by a proxy or by a client's retry) is always an error: the partition
// and offset in the report tell the two apart.
func sameRecords(t *testing.T, what string, want, got []rec) {
	t.Helper()
	seen := make(map[string]rec, len(got))
	n, rereads := 0, 0
	for _, r := range got {
		if prev, dup := seen[string(r.Key)]; dup {
			if r.At != nil && prev.At != nil && *r.At == *prev.At && bytes.Equal(r.Value, prev.Value) {
				rereads++
				continue
			}
			t.Errorf("%s: key %q consumed twice", what, r.Key)
		}
		seen[string(r.Key)] = r
		n++
	}
	if rereads > 0 {
		t.Logf("%s: the client read %d records a second time at the same partition and offset (not counted)", what, rereads)
	}
	bad := 0
	for _, r := range want {
		v, ok := seen[string(r.Key)]
		switch {
		case !ok:
			bad++
			if bad <= 5 {
				t.Errorf("%s: key %q produced but not consumed", what, r.Key)
			}
		case !bytes.Equal(v.Value, r.Value):
			bad++
			if bad <= 5 {
				t.Errorf("%s: key %q: value differs (%d bytes consumed, %d produced)", what, r.Key, len(v.Value), len(r.Value))
			}
		}
	}
	if n+rereads != len(got) || n != len(want) {
		t.Errorf("%s: consumed %d records (%d re-read at the same place), produced %d", what, len(got), rereads, len(want))
	}
	if bad > 5 {
		t.Errorf("%s: %d records missing or different in all", what, bad)
	}
}

// kgoClient is a franz-go client bootstrapped on seeds; v09 limits it to
// what Apache Kafka 0.9 speaks.
func kgoClient(t *testing.T, seeds []string, v09 bool, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	base := []kgo.Opt{
		kgo.SeedBrokers(seeds...),
		kgo.AllowAutoTopicCreation(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordDeliveryTimeout(90 * time.Second),
		kgo.SessionTimeout(10 * time.Second),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}
	if v09 {
		// 0.9 has no InitProducerID, so no idempotent writes.
		base = append(base, kgo.MaxVersions(kversion.V0_9_0()), kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produceAll produces recs to topic and waits for every acknowledgement.
func produceAll(t *testing.T, cl *kgo.Client, topic string, recs []rec) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value}
	}
	if err := cl.ProduceSync(ctx, krs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records to %s: %v", len(recs), topic, err)
	}
}

// pollUntil polls cl until it has n records or within passes, then keeps
// polling for settle to catch records that should not be there.
func pollUntil(t *testing.T, cl *kgo.Client, n int, within, settle time.Duration) []rec {
	t.Helper()
	var out []rec
	deadline := time.Now().Add(within)
	settled := time.Time{}
	for range 10000 {
		now := time.Now()
		if now.After(deadline) || (!settled.IsZero() && now.After(settled)) {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(topic string, p int32, err error) {
			if err != context.DeadlineExceeded {
				t.Logf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			out = append(out, rec{Key: r.Key, Value: r.Value})
		})
		if len(out) >= n && settled.IsZero() {
			settled = time.Now().Add(settle)
		}
	}
	return out
}

// consumeAll reads topic from the start with a fresh direct consumer until
// n records arrived (or a minute passed).
func consumeAll(t *testing.T, seeds []string, v09 bool, topic string, n int) []rec {
	t.Helper()
	cl := kgoClient(t, seeds, v09, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	return pollUntil(t, cl, n, 90*time.Second, 0)
}
