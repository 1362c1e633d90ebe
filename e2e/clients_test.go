package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// target is a cluster behind a kafkaguard binary, as the clients see it.
type target struct {
	name string
	g    *guard
	v09  bool // the cluster speaks only Apache Kafka 0.9's protocol versions
}

// TestClients runs kcat, kafka-python and franz-go through kafkaguard, against
// the real Kafka 0.9.0.1 broker and against a 3-broker kfake cluster.
func TestClients(t *testing.T) {
	requireE2E(t)
	t.Run("kafka-0.9.0.1", func(t *testing.T) {
		b := sharedBroker(t)
		runClients(t, target{name: "kafka09", g: startGuard(t, []string{b.Addr()}), v09: true})
	})
	t.Run("kfake-3-brokers", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		runClients(t, target{name: "kfake", g: startGuard(t, c.ListenAddrs())})
	})
}

func runClients(t *testing.T, tg target) {
	// Unique names per run: the shared 0.9 broker outlives a test run.
	run := time.Now().UnixNano() % 1e9
	t.Run("franz-go", func(t *testing.T) { franzClient(t, tg, fmt.Sprintf("e2e-franz-%s-%d", tg.name, run)) })
	t.Run("kcat", func(t *testing.T) { kcatClient(t, tg, fmt.Sprintf("e2e-kcat-%s-%d", tg.name, run)) })
	t.Run("kafka-python", func(t *testing.T) { pythonClient(t, tg, fmt.Sprintf("e2e-python-%s-%d", tg.name, run)) })
	// Real clients never trip a limit: nothing they sent may have been rejected.
	if n := metricSum(t, tg.g.admin, "kafkaguard_frames_rejected_total", nil); n != 0 {
		t.Errorf("kafkaguard rejected %v frames from well-behaved clients", n)
	}
	if n := metricSum(t, tg.g.admin, "kafkaguard_frames_forwarded_total", nil); n == 0 {
		t.Errorf("kafkaguard_frames_forwarded_total = 0 after the client tests")
	}
}

// checkAdvertised fails the test for every broker address that is not one of
// kafkaguard's listeners.
func checkAdvertised(t *testing.T, g *guard, who string, addrs []string) {
	t.Helper()
	if len(addrs) == 0 {
		t.Errorf("%s: no brokers in metadata", who)
	}
	for _, a := range addrs {
		if !g.isGuardAddr(a) {
			t.Errorf("%s: metadata shows broker %s, not a kafkaguard listener %v (upstreams %v)", who, a, g.addrs, g.upstreams)
		}
	}
}

func franzClient(t *testing.T, tg target, topic string) {
	first := genRecords(11, "franz", 500, 2048, false)
	second := genRecords(12, "franz2", 100, 2048, false)
	seeds := tg.g.addrs[:1]
	prod := kgoClient(t, seeds, tg.v09)
	produceAll(t, prod, topic, first)
	sameRecords(t, "franz-go direct consume", first, consumeAll(t, seeds, tg.v09, topic, len(first)))

	// Metadata, as a raw request: every broker is a kafkaguard address.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, mt)
	resp, err := req.RequestWith(ctx, prod)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	var brokers []string
	for _, b := range resp.Brokers {
		brokers = append(brokers, fmt.Sprintf("%s:%d", b.Host, b.Port))
	}
	checkAdvertised(t, tg.g, "franz-go metadata", brokers)
	if !tg.v09 && len(brokers) != 3 {
		t.Errorf("franz-go metadata: %d brokers, want 3", len(brokers))
	}

	// A consumer group: join, sync, consume, commit; then a new member of the
	// same group rejoins and must see only what came after the commit.
	group := topic + "-group"
	groupOpts := []kgo.Opt{kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit()}
	g1 := kgoClient(t, seeds, tg.v09, groupOpts...)
	got1 := pollUntil(t, g1, len(first), 90*time.Second, time.Second)
	sameRecords(t, "franz-go group, first member", first, got1)
	if err := g1.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	g1.Close()

	produceAll(t, prod, topic, second)
	g2 := kgoClient(t, seeds, tg.v09, groupOpts...)
	got2 := pollUntil(t, g2, len(second), 90*time.Second, 2*time.Second)
	sameRecords(t, "franz-go group, member after rejoin", second, got2)
	if err := g2.CommitUncommittedOffsets(ctx); err != nil {
		t.Errorf("commit after rejoin: %v", err)
	}
	g2.Close()
}

// kcatArgs are the arguments every kcat run needs for the target.
func kcatArgs(tg target) []string {
	args := []string{"-b", strings.Join(tg.g.addrs[:1], ","), "-X", "client.id=kafkaguard-e2e-kcat"}
	if tg.v09 {
		args = append(args, "-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0.1")
	}
	return args
}

func kcat(t *testing.T, tg target, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", append(kcatArgs(tg), args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, stderr.String())
	}
	if s := stderr.String(); strings.Contains(s, "ERROR") || strings.Contains(s, "Failed") {
		t.Errorf("kcat %v reported errors:\n%s", args, s)
	}
	return out
}

func kcatClient(t *testing.T, tg target, topic string) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat not installed (apt-get install kcat): %v", err)
	}
	recs := genRecords(21, "kcat", 500, 1024, true)
	var in bytes.Buffer
	for _, r := range recs {
		fmt.Fprintf(&in, "%s\t%s\n", r.Key, r.Value)
	}
	kcat(t, tg, in.Bytes(), "-P", "-t", topic, "-K", "\t", "-X", "request.required.acks=-1")

	out := kcat(t, tg, nil, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n")
	var got []rec
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		k, v, ok := strings.Cut(line, "\t")
		if !ok {
			t.Errorf("kcat consume: line %q has no tab", line)
			continue
		}
		got = append(got, rec{Key: []byte(k), Value: []byte(v)})
	}
	sameRecords(t, "kcat produce/consume", recs, got)

	var md struct {
		Brokers []struct {
			ID   int32  `json:"id"`
			Name string `json:"name"`
		} `json:"brokers"`
	}
	raw := kcat(t, tg, nil, "-L", "-J", "-t", topic)
	if err := json.Unmarshal(raw, &md); err != nil {
		t.Fatalf("kcat -L -J: %v\n%s", err, raw)
	}
	var brokers []string
	for _, b := range md.Brokers {
		name, _, _ := strings.Cut(b.Name, "/") // librdkafka may append "/id"
		brokers = append(brokers, name)
	}
	checkAdvertised(t, tg.g, "kcat -L -J", brokers)
}

func pythonClient(t *testing.T, tg target, topic string) {
	const py = "/usr/bin/python3" // Debian's interpreter: the one that sees python3-kafka
	first := genRecords(31, "py", 300, 2048, false)
	second := genRecords(32, "py2", 50, 2048, false)
	enc := func(rs []rec) [][2]string {
		out := make([][2]string, len(rs))
		for i, r := range rs {
			out[i] = [2]string{base64.StdEncoding.EncodeToString(r.Key), base64.StdEncoding.EncodeToString(r.Value)}
		}
		return out
	}
	apiVersion := "auto"
	if tg.v09 {
		apiVersion = "0.9"
	} else {
		// kafka-python sends Metadata v1, which kfake answers with
		// UNKNOWN_TOPIC_OR_PARTITION instead of creating the topic (it only
		// auto-creates for v4+ with allow_auto_topic_creation): create it first.
		createTopic(t, tg.g.addrs[:1], topic, 3)
	}
	job, err := json.Marshal(map[string]any{
		"bootstrap": tg.g.addrs[:1], "api_version": apiVersion, "topic": topic, "group": topic + "-group",
		"first": enc(first), "second": enc(second),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("testdata", "kafka_python_client.py"))
	cmd.Stdin = bytes.NewReader(job)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kafka-python client: %v\n%s", err, tail(stderr.Bytes(), 40))
	}
	var rep struct {
		Brokers     []string    `json:"brokers"`
		Direct      [][2]string `json:"direct"`
		GroupFirst  [][2]string `json:"group_first"`
		GroupSecond [][2]string `json:"group_second"`
		Version     string      `json:"kafka_python"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("kafka-python report: %v\n%s\n%s", err, out, tail(stderr.Bytes(), 40))
	}
	dec := func(in [][2]string) []rec {
		var rs []rec
		for _, kv := range in {
			k, err1 := base64.StdEncoding.DecodeString(kv[0])
			v, err2 := base64.StdEncoding.DecodeString(kv[1])
			if err1 != nil || err2 != nil {
				t.Fatalf("kafka-python report: bad base64 %q", kv)
			}
			rs = append(rs, rec{Key: k, Value: v})
		}
		return rs
	}
	t.Logf("kafka-python %s", rep.Version)
	sameRecords(t, "kafka-python direct consume", first, dec(rep.Direct))
	sameRecords(t, "kafka-python group, first member", first, dec(rep.GroupFirst))
	sameRecords(t, "kafka-python group, member after rejoin", second, dec(rep.GroupSecond))
	checkAdvertised(t, tg.g, "kafka-python cluster metadata", rep.Brokers)
}

// createTopic creates topic through kafkaguard with a CreateTopics request.
func createTopic(t *testing.T, seeds []string, topic string, partitions int32) {
	t.Helper()
	cl := kgoClient(t, seeds, false)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, 1
	req.Topics = append(req.Topics, rt)
	req.TimeoutMillis = 10000
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
}
