package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/framing"
	"github.com/kafkaguard/kafkaguard/limits"
)

// needClient skips a test whose external client is missing, unless
// KG_REQUIRE_CLIENTS=1 (CI sets it), where a missing client fails.
func needClient(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if _, err := exec.LookPath(path); err == nil {
		return
	}
	if os.Getenv("KG_REQUIRE_CLIENTS") == "1" {
		t.Fatalf("%s not installed (KG_REQUIRE_CLIENTS=1)", path)
	}
	t.Skipf("%s not installed; .ci/run installs it", path)
}

// An oversized Produce is answered with MESSAGE_TOO_LARGE, and the same
// client's next small record succeeds on the same connection.
func TestOversizedProduceFranzGo(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := h.client(kgo.DefaultProduceTopic("big"), kgo.ProducerBatchMaxBytes(4<<20), kgo.MaxBufferedBytes(16<<20))
	if err := cl.ProduceSync(ctx, kgo.StringRecord("warm-up")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	conns := h.counter("kafkaguard_connections_total", nil)

	start := time.Now()
	err := cl.ProduceSync(ctx, &kgo.Record{Value: incompressible(1100 << 10)}).FirstErr()
	took := time.Since(start)
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("oversized record: err = %v, want MESSAGE_TOO_LARGE", err)
	}
	t.Logf("franz-go: oversized record failed with %v after %v", err, took)
	if err := cl.ProduceSync(ctx, kgo.StringRecord("small after big")).FirstErr(); err != nil {
		t.Fatalf("small record after the refused one: %v", err)
	}
	if got := h.counter("kafkaguard_connections_total", nil); got != conns {
		t.Errorf("connections_total %v -> %v: the client reconnected", conns, got)
	}
	if got := h.counter("kafkaguard_local_responses_total", map[string]string{"api": "Produce", "error": "MESSAGE_TOO_LARGE"}); got != 1 {
		t.Errorf("local MESSAGE_TOO_LARGE responses = %v, want 1", got)
	}
	if got := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "too_large", "api": "Produce"}); got != 1 {
		t.Errorf("rejected too_large Produce = %v, want 1", got)
	}
}

// Every Produce version gets a well-formed MESSAGE_TOO_LARGE for every
// topic-partition, in its turn after the responses owed before it, and the
// connection goes on.
func TestOversizedProduceEveryVersion(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1,
		policy: limits.PolicyOptions{MaxRequestBytes: 1 << 20, PerAPI: map[int16]int32{0: 64 << 10},
			MaxClientIDBytes: 256, MaxDrainBytes: 1 << 20}})
	maxVer, _ := framing.MaxVersion(kmsg.Produce.Int16()) // the versions kafkaguard serves (KIP-951 cap)
	for v := int16(0); v <= maxVer; v++ {
		req := kmsg.NewPtrProduceRequest()
		req.Version = v
		req.Acks = -1
		req.TimeoutMillis = 1000
		for ti, name := range []string{"alpha", "beta"} {
			topic := kmsg.NewProduceRequestTopic()
			topic.Topic = name
			topic.TopicID[0] = byte(ti + 1)
			for p := range int32(3) {
				part := kmsg.NewProduceRequestTopicPartition()
				part.Partition = p
				part.Records = bytes.Repeat([]byte{byte(p)}, 20<<10) // 6 x 20 KiB > 64 KiB
				topic.Partitions = append(topic.Partitions, part)
			}
			req.Topics = append(req.Topics, topic)
		}
		c, err := net.Dial("tcp", h.addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		// Pipelined: ApiVersions (owed by the broker) then the oversized
		// Produce (answered locally) then Metadata.
		f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("versions"))
		av := kmsg.NewPtrApiVersionsRequest()
		md := kmsg.NewPtrMetadataRequest()
		md.Version = 1
		// AppendRequest sizes the frame from the start of dst: format each
		// request on its own, then send them in one write.
		var out []byte
		out = append(out, f.AppendRequest(nil, av, 1)...)
		out = append(out, f.AppendRequest(nil, req, 2)...)
		out = append(out, f.AppendRequest(nil, md, 3)...)
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		readResponseFrom(t, c, av, 1)
		resp := readResponseFrom(t, c, req, 2).(*kmsg.ProduceResponse)
		if len(resp.Topics) != 2 {
			t.Fatalf("v%d: %d topics in response, want 2", v, len(resp.Topics))
		}
		for _, topic := range resp.Topics {
			if len(topic.Partitions) != 3 {
				t.Fatalf("v%d: topic %s: %d partitions, want 3", v, topic.Topic, len(topic.Partitions))
			}
			for _, p := range topic.Partitions {
				if p.ErrorCode != kerr.MessageTooLarge.Code {
					t.Errorf("v%d: %s/%d error %d, want %d", v, topic.Topic, p.Partition, p.ErrorCode, kerr.MessageTooLarge.Code)
				}
			}
		}
		readResponseFrom(t, c, md, 3)
		c.Close()
	}
}

// kcat (librdkafka) reports "Message size too large" for an oversized
// record, and does not reconnect for it.
func TestOversizedProduceKcat(t *testing.T) {
	needClient(t, "kcat")
	h := newHarness(t, harnessOpts{brokers: 3})
	conns := h.counter("kafkaguard_connections_total", nil)
	run := func(value []byte) (string, error, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "kcat", "-P", "-b", h.addrs[0], "-t", "kcat-big",
			"-X", "message.max.bytes=4000000", "-X", "message.send.max.retries=0")
		cmd.Stdin = bytes.NewReader(value)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		return string(out), err, time.Since(start)
	}
	out, err, took := run(letters(1100 << 10))
	t.Logf("kcat oversized: %v after %v: %s", err, took, strings.TrimSpace(out))
	if !strings.Contains(out, "Message size too large") {
		t.Fatalf("kcat output does not report Message size too large:\n%s", out)
	}
	out, err, _ = run([]byte("small\n"))
	if err != nil {
		t.Fatalf("kcat small record: %v\n%s", err, out)
	}
	// kcat is a new process each run: it opens its bootstrap and broker
	// connections once per run. A reconnect loop would open many more.
	if got := h.counter("kafkaguard_connections_total", nil) - conns; got > 8 {
		t.Errorf("kcat opened %v connections for two runs: it reconnected", got)
	}
	if got := h.counter("kafkaguard_local_responses_total", map[string]string{"api": "Produce"}); got != 1 {
		t.Errorf("local responses = %v, want 1", got)
	}
}

// kafka-python (Debian's python3-kafka), pinned to Kafka 0.11's protocol,
// sends Produce v3; it gets MessageSizeTooLargeError and its next small
// record succeeds. (kfake does not read the pre-0.11 message format that
// Produce v0-2 carry; the e2e suite covers those against Kafka 0.9.)
func TestOversizedProducePythonKafka(t *testing.T) {
	const python = "/usr/bin/python3"
	needClient(t, python)
	if err := exec.Command(python, "-c", "import kafka").Run(); err != nil {
		if os.Getenv("KG_REQUIRE_CLIENTS") == "1" {
			t.Fatalf("python3-kafka not installed: %v", err)
		}
		t.Skip("python3-kafka not installed; .ci/run installs it")
	}
	h := newHarness(t, harnessOpts{brokers: 1, kfakeOpts: []kfake.Opt{kfake.SeedTopics(1, "py-big")}})
	script := `
import sys, time
from kafka import KafkaProducer
from kafka.errors import MessageSizeTooLargeError
p = KafkaProducer(bootstrap_servers=sys.argv[1], api_version=(0, 11), max_request_size=8*1024*1024,
                  retries=0, request_timeout_ms=10000)
t0 = time.time()
try:
    p.send("py-big", b"z" * (1100 * 1024)).get(timeout=20)
    print("BIG-ACCEPTED")
except MessageSizeTooLargeError as e:
    print("BIG-REFUSED %.3fs %r" % (time.time() - t0, e))
p.send("py-big", b"small").get(timeout=20)
print("SMALL-OK")
p.close()
`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", script, h.addrs[0]).CombinedOutput()
	t.Logf("kafka-python: %s", out)
	if err != nil {
		t.Fatalf("kafka-python: %v", err)
	}
	if !strings.Contains(string(out), "BIG-REFUSED") || !strings.Contains(string(out), "SMALL-OK") {
		t.Fatalf("kafka-python did not see MESSAGE_TOO_LARGE then success:\n%s", out)
	}
	if got := h.counter("kafkaguard_local_responses_total", map[string]string{"api": "Produce"}); got != 1 {
		t.Errorf("local responses = %v, want 1", got)
	}
}

// incompressible returns n random bytes, so no client compresses a record
// under the limit.
func incompressible(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// letters returns n random lowercase letters: incompressible enough, and
// free of the newlines kcat splits messages on.
func letters(n int) []byte {
	b := incompressible(n)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return b
}

// produceSizeHook records the bytes of the last Produce request written.
type produceSizeHook struct{ last atomic.Int64 }

func (h *produceSizeHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, n int, _, _ time.Duration, _ error) {
	if key == 0 {
		h.last.Store(int64(n))
	}
}

// A record whose Produce frame is exactly one byte over the limit is refused
// at once; one byte less is accepted. The test finds that boundary for
// franz-go and kcat and logs how long each took to report the refusal.
func TestOneByteOverLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("searches the size boundary with ~40 produce calls")
	}
	const limit = 256 << 10
	h := newHarness(t, harnessOpts{brokers: 1,
		policy: limits.PolicyOptions{MaxRequestBytes: 1 << 20, PerAPI: map[int16]int32{0: limit},
			MaxClientIDBytes: 256, MaxDrainBytes: 4 << 20},
		kfakeOpts: []kfake.Opt{kfake.SeedTopics(1, "edge")}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hook := &produceSizeHook{}
	cl := h.client(kgo.DefaultProduceTopic("edge"), kgo.WithHooks(hook), kgo.ProducerBatchMaxBytes(4<<20),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	value := letters(limit)
	produce := func(n int) (time.Duration, error) {
		start := time.Now()
		err := cl.ProduceSync(ctx, &kgo.Record{Value: value[:n]}).FirstErr()
		return time.Since(start), err
	}
	// Largest accepted value size, by bisection.
	lo, hi := 1, limit // lo accepted, hi refused
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if _, err := produce(mid); err == nil {
			lo = mid
		} else if errors.Is(err, kerr.MessageTooLarge) {
			hi = mid
		} else {
			t.Fatalf("produce %d bytes: %v", mid, err)
		}
	}
	if _, err := produce(lo); err != nil {
		t.Fatalf("boundary value %d refused on retry: %v", lo, err)
	}
	if got := hook.last.Load() - 4; got != limit {
		t.Fatalf("largest accepted Produce frame is %d bytes, want exactly the limit %d", got, limit)
	}
	took, err := produce(lo + 1)
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("one byte over: %v, want MESSAGE_TOO_LARGE", err)
	}
	if got := hook.last.Load() - 4; got != limit+1 {
		t.Fatalf("refused frame is %d bytes, want limit+1 = %d", got, limit+1)
	}
	accepted, _ := produce(lo)
	t.Logf("franz-go: frame of limit+1 (%d bytes) refused with MESSAGE_TOO_LARGE in %v (frame of the limit accepted in %v)",
		limit+1, took, accepted)

	if _, err := exec.LookPath("kcat"); err != nil {
		return
	}
	kcat := func(n int) (time.Duration, string) {
		cmd := exec.CommandContext(ctx, "kcat", "-P", "-b", h.addrs[0], "-t", "edge", "-p", "0",
			"-X", "message.max.bytes=4000000", "-X", "message.send.max.retries=0")
		cmd.Stdin = bytes.NewReader(value[:n])
		start := time.Now()
		out, _ := cmd.CombinedOutput()
		return time.Since(start), string(out)
	}
	lo, hi = 1, limit
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if _, out := kcat(mid); !strings.Contains(out, "Message size too large") {
			lo = mid
		} else {
			hi = mid
		}
	}
	okTook, _ := kcat(lo)
	badTook, out := kcat(lo + 1)
	if !strings.Contains(out, "Message size too large") {
		t.Fatalf("kcat one byte over: %s", out)
	}
	t.Logf("kcat: value %d bytes (1 byte over) refused in %v for the whole kcat run (%v for one byte less, accepted): %s",
		lo+1, badTook, okTook, strings.TrimSpace(out))
}
