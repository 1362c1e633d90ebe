package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// dialLog records every address an in-process client dials.
type dialLog struct {
	mu    sync.Mutex
	addrs map[string]int
}

func (d *dialLog) dial(ctx context.Context, network, host string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs[host]++
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, host)
}

func (d *dialLog) snapshot() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int, len(d.addrs))
	for k, v := range d.addrs {
		out[k] = v
	}
	return out
}

var ssUsers = regexp.MustCompile(`\(\("([^"]*)",pid=(\d+)`)

// bypassWatch polls the kernel's socket table (ss -tnp) for established TCP
// connections to the brokers' own ports and records each one whose client
// end belongs to a process that is neither a broker nor kafkaguard: a client
// that went around kafkaguard.
type bypassWatch struct {
	ports   []int
	allowed func() map[int]bool
	mu      sync.Mutex
	seen    map[string]bool // "pid local->remote"
	polls   int
}

func (w *bypassWatch) poll() {
	out, err := exec.Command("ss", "-Htnp", "state", "established").Output()
	if err != nil {
		return
	}
	allowed := w.allowed()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		// Recv-Q Send-Q Local Peer [Process]
		_, ps, err := net.SplitHostPort(f[3])
		if err != nil {
			continue
		}
		p, _ := strconv.Atoi(ps)
		isBroker := false
		for _, bp := range w.ports {
			isBroker = isBroker || p == bp
		}
		if !isBroker {
			continue
		}
		m := ssUsers.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		// kafka-4.sh's readiness probe (python, raw Metadata v4) is the one
		// other process that talks to the brokers' ports, on purpose.
		if !allowed[pid] && !strings.HasPrefix(m[1], "python") {
			w.seen[fmt.Sprintf("pid %d (%s) %s->%s", pid, m[1], f[2], f[3])] = true
		}
	}
}

func (w *bypassWatch) result() (polls int, bypass []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.seen {
		bypass = append(bypass, k)
	}
	return w.polls, bypass
}

// leaders maps partition -> leader node id for topic, asked through seeds.
func leaders(t *testing.T, cl *kgo.Client, topic string) map[int32]int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	out := map[int32]int32{}
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			out[p.Partition] = p.Leader
		}
	}
	return out
}

// createTopicRF creates topic through kafkaguard with rf replicas per partition.
func createTopicRF(t *testing.T, seeds []string, topic string, partitions int32, rf int16) {
	t.Helper()
	cl := kgoClient(t, seeds, false)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, partitions, rf
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

// TestKafka4LeaderMove moves partition leadership under a running producer
// and a consumer group (node 3 is stopped, then started again) and proves that
// no client connects to a broker's own port: every in-process dial is logged,
// and the kernel's socket table is polled for connections to the brokers'
// ports from any process that is neither a broker nor kafkaguard. Kafka 4
// would hand clients the brokers' own addresses in KIP-951 NodeEndpoints of
// Produce v10+/Fetch v16+ responses; kafkaguard serves only older versions.
func TestKafka4LeaderMove(t *testing.T) {
	requireKafka4(t)
	if _, err := exec.LookPath("ss"); err != nil {
		t.Fatalf("ss (iproute2) is needed to watch the brokers' ports: %v", err)
	}
	k := sharedKafka4(t)
	g := startGuard(t, k.Addrs())
	topic := fmt.Sprintf("e2e4-leader-%d", time.Now().UnixNano()%1e9)
	createTopicRF(t, g.addrs[:1], topic, 6, 3)
	var brokerPids sync.Map

	var ports []int
	for i := range k.nodes {
		ports = append(ports, k.port+i)
	}
	w := &bypassWatch{ports: ports, seen: map[string]bool{}, allowed: func() map[int]bool {
		a := map[int]bool{g.cmd.Process.Pid: true}
		for n := 1; n <= k.nodes; n++ {
			// A stopped node has no pid file; its old pid stays allowed.
			if raw, err := os.ReadFile(filepath.Join(k.data, fmt.Sprintf("node-%d.pid", n))); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil {
					brokerPids.Store(pid, true)
				}
			}
		}
		brokerPids.Range(func(p, _ any) bool { a[p.(int)] = true; return true })
		return a
	}}
	stopWatch := make(chan struct{})
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopWatch:
				return
			case <-tick.C:
				w.poll()
			}
		}
	}()
	watchStopped := false
	stop := func() {
		if !watchStopped {
			watchStopped = true
			close(stopWatch)
			watchWG.Wait()
		}
	}
	defer stop()

	dl := &dialLog{addrs: map[string]int{}}
	prod := kgoClient(t, g.addrs[:1], false, kgo.Dialer(dl.dial), kgo.RecordRetries(100),
		kgo.ProducerLinger(5*time.Millisecond))
	cons := kgoClient(t, g.addrs[:1], false, kgo.Dialer(dl.dial), kgo.ConsumerGroup(topic+"-group"),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var before map[int32]int32
	eventually(30*time.Second, 200*time.Millisecond, func() bool {
		before = leaders(t, prod, topic)
		for _, n := range before {
			if n < 0 {
				return false
			}
		}
		return len(before) == 6
	})

	// Producer: one record every 5 ms until told to stop; count acks.
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	prodCtx, prodCancel := context.WithCancel(context.Background())
	defer prodCancel()
	var prodWG sync.WaitGroup
	prodWG.Add(1)
	go func() {
		defer prodWG.Done()
		for i := 0; i < 20000; i++ {
			select {
			case <-prodCtx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
			prod.Produce(prodCtx, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte("v")},
				func(_ *kgo.Record, err error) {
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					} else {
						acked.Add(1)
					}
				})
		}
	}()
	// Consumer: poll until told to stop; count distinct keys.
	consumed := map[string]bool{}
	var consMu sync.Mutex
	consCtx, consCancel := context.WithCancel(context.Background())
	defer consCancel()
	var consWG sync.WaitGroup
	consWG.Add(1)
	go func() {
		defer consWG.Done()
		for range 100000 {
			fs := cons.PollFetches(consCtx)
			if consCtx.Err() != nil {
				return
			}
			consMu.Lock()
			fs.EachRecord(func(r *kgo.Record) { consumed[string(r.Key)] = true })
			consMu.Unlock()
		}
	}()

	time.Sleep(5 * time.Second)
	if out, err := k.script("stop", "3"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("%s", strings.TrimSpace(out))
	}
	time.Sleep(10 * time.Second)
	during := leaders(t, prod, topic)
	if out, err := k.script("start", "3"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("%s", strings.TrimSpace(out))
	}
	// Move leadership back to node 3 (preferred leader election through
	// kafkaguard), a second move under the running clients.
	elect := kmsg.NewPtrElectLeadersRequest()
	et := kmsg.NewElectLeadersRequestTopic()
	et.Topic = topic
	for p := range int32(6) {
		et.Partitions = append(et.Partitions, p)
	}
	elect.Topics = append(elect.Topics, et)
	elect.TimeoutMillis = 10000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eventually(30*time.Second, time.Second, func() bool {
		_, err := elect.RequestWith(ctx, prod)
		if err != nil {
			return false
		}
		l := leaders(t, prod, topic)
		for p, n := range before {
			if l[p] != n {
				return false
			}
		}
		return true
	})
	after := leaders(t, prod, topic)
	time.Sleep(5 * time.Second)

	prodCancel()
	prodWG.Wait()
	flushCtx, flushCancel := context.WithTimeout(context.Background(), 30*time.Second)
	prod.Flush(flushCtx)
	flushCancel()
	// Let the consumer catch up with every acknowledged record (bounded).
	eventually(60*time.Second, 500*time.Millisecond, func() bool {
		consMu.Lock()
		defer consMu.Unlock()
		return int64(len(consumed)) >= acked.Load()
	})
	consCancel()
	consWG.Wait()
	stop()

	moved := 0
	for p, n := range before {
		if during[p] != n {
			moved++
		}
	}
	polls, bypass := w.result()
	consMu.Lock()
	nConsumed := len(consumed)
	consMu.Unlock()
	dials := dl.snapshot()
	t.Logf("FIGURES kafka4 leader move: leaders %v -> (node 3 stopped) %v -> (node 3 back, preferred election) %v; %d of %d partitions moved; records acked %d, failed %d (first error: %v), consumed %d distinct; client dials %v; %d socket-table polls, connections to brokers' own ports from other processes: %d",
		before, during, after, moved, len(before), acked.Load(), failed.Load(), firstErr.Load(), nConsumed, dials, polls, len(bypass))

	for a := range dials {
		if !g.isGuardAddr(a) {
			t.Errorf("a client dialled %s, not a kafkaguard listener %v", a, g.addrs)
		}
	}
	for _, b := range bypass {
		t.Errorf("connection to a broker's own port from a process that is neither broker nor kafkaguard: %s", b)
	}
	if moved == 0 {
		t.Errorf("no partition leader moved when node 3 stopped (before %v, during %v): the test proved nothing", before, during)
	}
	if polls < 50 {
		t.Errorf("only %d polls of the socket table", polls)
	}
	if acked.Load() == 0 || int64(nConsumed) < acked.Load() {
		t.Errorf("acked %d records, consumed %d", acked.Load(), nConsumed)
	}
}
