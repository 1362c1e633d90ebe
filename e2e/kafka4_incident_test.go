package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// socketRequestMax is Kafka's socket.request.max.bytes default (100 MiB):
// a declared size up to it is accepted and allocated.
const socketRequestMax = 100 << 20

// attack4 is one variant of the declared-size attack on Kafka 4.
type attack4 struct {
	name   string
	conns  int
	size   uint32
	header bool // a valid Metadata v4 request header after the size, else one byte
}

func (a attack4) payload() []byte {
	p := binary.BigEndian.AppendUint32(nil, a.size)
	if a.header {
		return append(p, 0, 3, 0, 4, 0, 0, 0, 7, 0, 3, 'o', 'o', 'm') // Metadata v4, corr 7, client "oom"
	}
	return append(p, 'x')
}

// run opens a.conns fresh connections from src (nil: any) to addr, writes the
// payload on each and leaves them open, as the seed's client does.
func (a attack4) run(t *testing.T, addr string, src net.Addr) []net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: src}
	var conns []net.Conn
	refused := 0
	for range a.conns {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			refused++
			continue
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(a.payload())
		conns = append(conns, c)
	}
	if refused > 0 {
		t.Logf("%s: %d of %d connections refused at connect", a.name, refused, a.conns)
	}
	return conns
}

// kafka4Attacks are the seed's attack (8 connections declaring 50 MiB+1 with
// one byte, 8 more with a valid header) and heavier variants: sizes just under
// socket.request.max.bytes, and more connections than the broker has network
// threads and direct memory for.
var kafka4Attacks = []attack4{
	{"seed 8x50MiB+1, one byte", 8, declaredSize, false},
	{"seed 8x50MiB+1, Metadata v4 header", 8, declaredSize, true},
	{"32x(100MiB-1), one byte", 32, socketRequestMax - 1, false},
	{"32x(100MiB-1), Metadata v4 header", 32, socketRequestMax - 1, true},
}

// brokerServes checks that a broker answers Metadata on 3 fresh connections
// (Kafka deals new connections round-robin over its network threads) and
// takes a produce, each bounded in time. It returns what failed.
func brokerServes(t *testing.T, addrs []string, topic string) (metaFailed int, produceErr error) {
	t.Helper()
	for range 3 {
		if err := metadataV4Probe(addrs[0], 5*time.Second); err != nil {
			metaFailed++
			t.Logf("metadata: %v", err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.AllowAutoTopicCreation(),
		kgo.RecordDeliveryTimeout(20*time.Second), kgo.RequestTimeoutOverhead(5*time.Second))
	if err != nil {
		return metaFailed, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	return metaFailed, cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("still alive?")}).FirstErr()
}

// settleOOM waits until no new OutOfMemoryError line has been logged for 3 s
// (at most 30 s), so the figures count the attack's whole effect.
func settleOOM(t *testing.T, k *kafka4) {
	last, quiet := -1, 0
	for range 60 {
		n, _, _ := oomCounts(k.log(t, 1))
		if n == last {
			quiet++
		} else {
			last, quiet = n, 0
		}
		if quiet >= 6 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestKafka4Incident runs the seed's attack and heavier variants directly
// against a single Apache Kafka 4 broker (-XX:MaxDirectMemorySize=100m,
// -Xmx512m), reporting what each does, then the same attacks through
// kafkaguard against a fresh broker.
func TestKafka4Incident(t *testing.T) {
	requireKafka4(t)
	k := newKafka4(t, 1)

	hurt := false
	t.Run("direct", func(t *testing.T) {
		for i, a := range kafka4Attacks {
			pid := k.pid(t, 1)
			before := rssKiB(t, pid)
			oomBefore, _, _ := oomCounts(k.log(t, 1))
			conns := a.run(t, k.Addrs()[0], nil)
			time.Sleep(3 * time.Second)
			settleOOM(t, k)
			after := rssKiB(t, pid)
			all, direct, heap := oomCounts(k.log(t, 1))
			metaFailed, perr := brokerServes(t, k.Addrs(), fmt.Sprintf("after-attack-%d", i))
			closeAll(conns)
			t.Logf("FIGURES kafka4 direct attack %q: %d connections; broker RSS %d KiB -> %d KiB (%+d MiB); new OutOfMemoryError lines %d (total %d: direct buffer memory %d, heap %d); metadata failed on %d of 3 fresh connections; produce: %v",
				a.name, len(conns), before, after, (after-before)/1024, all-oomBefore, all, direct, heap, metaFailed, errText(perr))
			if all > oomBefore || metaFailed > 0 || perr != nil {
				hurt = true
				t.Logf("FIGURES kafka4 direct attack: %q is the first variant that hurts the broker", a.name)
				return
			}
		}
	})
	if !hurt {
		t.Logf("FIGURES kafka4 direct attack: no variant hurt the broker")
	}

	// A fresh broker: stopped, wiped, started.
	if _, err := k.script("wipe"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.script("start"); err != nil {
		t.Fatal(err)
	}

	t.Run("through_kafkaguard", func(t *testing.T) {
		g := startGuard(t, k.Addrs())
		pid := k.pid(t, 1)
		topic := "incident4-guarded"
		warm := genRecords(3, "warm4", 200, 512, false)
		produceAll(t, kgoClient(t, g.addrs, false), topic, warm)
		before := rssKiB(t, pid)
		open, total := 0, 0
		for i, a := range kafka4Attacks {
			// A source address per variant, so each meets the gate afresh
			// (a banned source is refused at accept, which proves less).
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 4, byte(10+i))}
			conns := a.run(t, g.addrs[0], src)
			total += len(conns)
			for _, c := range conns {
				if awaitClose(c, 15*time.Second) != nil {
					open++
				}
			}
			closeAll(conns)
		}
		time.Sleep(3 * time.Second)
		after := rssKiB(t, pid)
		all, direct, heap := oomCounts(k.log(t, 1))
		tooLarge := metricSum(t, g.admin, "kafkaguard_frames_rejected_total", map[string]string{"reason": "too_large"})
		refused := metricSum(t, g.admin, "kafkaguard_connections_refused_total", nil)
		t.Logf("FIGURES kafka4 through kafkaguard, all %d variants: broker RSS %d KiB -> %d KiB (%+d KiB); OutOfMemoryError lines %d (direct %d, heap %d); %d attack connections accepted, %d left open; frames_rejected_total{reason=too_large} %v; connections_refused_total %v",
			len(kafka4Attacks), before, after, after-before, all, direct, heap, total, open, tooLarge, refused)
		if open > 0 {
			t.Errorf("%d attack connections still open 15s after an over-limit size; want all closed", open)
		}
		if all > 0 {
			t.Errorf("broker logged %d OutOfMemoryError lines behind kafkaguard; want none", all)
		}
		if after-before > 64<<10 {
			t.Errorf("broker RSS grew by %d KiB behind kafkaguard; want under 64 MiB", after-before)
		}
		metaFailed, perr := brokerServes(t, g.addrs, topic)
		if metaFailed > 0 || perr != nil {
			t.Errorf("through kafkaguard after the attacks: metadata failed %d of 3, produce: %v", metaFailed, perr)
		}
		recs := genRecords(4, "after4", 300, 1024, false)
		produceAll(t, kgoClient(t, g.addrs, false), topic, recs)
		got := consumeAll(t, g.addrs, false, topic, len(warm)+len(recs)+1)
		if len(got) != len(warm)+len(recs)+1 {
			t.Errorf("consumed %d records after the attacks, want %d", len(got), len(warm)+len(recs)+1)
		}
	})
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
