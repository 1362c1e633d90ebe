package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafka4CutThrough runs franz-go through kafkaguard with
// proxy.cut_through_bytes set (opt-in; README, "Cut through, the body through
// a pipe") against the Kafka 4 cluster: its Produce frames of batches up to
// 256 KiB, nearly all larger than the 32 KiB threshold, are sent on to the
// brokers as they arrive (on Linux their bodies through a kernel pipe), and
// every record is read back byte for byte. kafkaguard_cut_through_frames_total
// says frames were cut through, and none was stored for want of budget.
func TestKafka4CutThrough(t *testing.T) {
	requireKafka4(t)
	k := sharedKafka4(t)
	g := launchGuard(t, k.Addrs(), "", func(cfg string) string {
		return cfg + "proxy: {cut_through_bytes: 32KiB}\n"
	})
	topic := fmt.Sprintf("e2e4-cut-%d", time.Now().UnixNano()%1e9)
	recs := genRecords(41, "cut", 3000, 4096, false) // about 6 MB
	// 256 KiB batches: a request holding one per partition stays under
	// the guard's 1 MiB limit.
	prod := kgoClient(t, g.addrs[:1], false, kgo.ProducerBatchMaxBytes(256<<10), kgo.ProducerLinger(20*time.Millisecond))
	produceAll(t, prod, topic, recs)
	cut := metricSum(t, g.admin, "kafkaguard_cut_through_frames_total", nil)
	over := metricSum(t, g.admin, "kafkaguard_cut_through_over_budget_total", nil)
	produced := metricSum(t, g.admin, "kafkaguard_frames_forwarded_total", map[string]string{"api": "Produce"})
	sameRecords(t, "franz-go through kafkaguard cutting frames through", recs, consumeAll(t, g.addrs[:1], false, topic, len(recs)))
	t.Logf("FIGURES kafka4 cut-through: %d records; %d Produce frames forwarded, %d cut through, %d over budget",
		len(recs), int(produced), int(cut), int(over))
	if cut == 0 {
		t.Error("no frame was cut through")
	}
	if over != 0 {
		t.Errorf("%v frames stored whole for want of budget; the default budget holds 64 such frames", over)
	}
}
