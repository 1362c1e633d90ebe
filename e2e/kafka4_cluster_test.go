package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// kafka4Env enables the Kafka 4 suite: a 3-node KRaft cluster from
// deploy/testing/kafka-4.sh and today's clients, through kafkaguard.
const kafka4Env = "KG_E2E_KAFKA4"

// requireKafka4 skips the test unless KG_E2E_KAFKA4=1.
func requireKafka4(t *testing.T) {
	t.Helper()
	if os.Getenv(kafka4Env) != "1" {
		t.Skipf("Kafka 4 end-to-end test: set %s=1 (needs java, mvn, kcat, node, a venv with confluent-kafka and kafka-python; see .ci/run)", kafka4Env)
	}
}

// kafka4 is one cluster of deploy/testing/kafka-4.sh: nodes 1..n, node i's
// client listener on port+i-1, controllers on cport+i-1.
type kafka4 struct {
	nodes, port, cport int
	data               string
	extraEnv           []string
}

// Addrs are the nodes' client addresses, node 1 first.
func (k *kafka4) Addrs() []string {
	out := make([]string, k.nodes)
	for i := range out {
		out[i] = "127.0.0.1:" + strconv.Itoa(k.port+i)
	}
	return out
}

func (k *kafka4) script(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(repoRoot, "deploy/testing/kafka-4.sh")}, args...)...)
	c.Env = append(os.Environ(),
		"KAFKA4_NODES="+strconv.Itoa(k.nodes),
		"KAFKA4_PORT="+strconv.Itoa(k.port),
		"KAFKA4_CONTROLLER_PORT="+strconv.Itoa(k.cport),
		"KAFKA4_DATA="+k.data,
	)
	c.Env = append(c.Env, k.extraEnv...)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kafka-4.sh %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// classpath is the directory glob of the Kafka jars the script fetched.
func (k *kafka4) classpath(t *testing.T) string {
	t.Helper()
	out, err := k.script("env")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if cp, ok := strings.CutPrefix(line, "CLASSPATH="); ok {
			return cp
		}
	}
	t.Fatalf("kafka-4.sh env printed no CLASSPATH:\n%s", out)
	return ""
}

// pid is node n's JVM process id.
func (k *kafka4) pid(t *testing.T, n int) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(k.data, fmt.Sprintf("node-%d.pid", n)))
	if err != nil {
		t.Fatalf("node %d pid: %v", n, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("node %d pid: %v", n, err)
	}
	return pid
}

// log is node n's log so far.
func (k *kafka4) log(t *testing.T, n int) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(k.data, "logs", fmt.Sprintf("node-%d.log", n)))
	if err != nil {
		t.Fatalf("node %d log: %v", n, err)
	}
	return string(raw)
}

var shared4 struct {
	sync.Once
	k       *kafka4
	started bool
	err     error
}

// sharedKafka4 is the 3-node cluster the Kafka 4 client tests share: the one
// .ci/run started on the script's default ports (29092-29094; another first
// port with KG_E2E_KAFKA4_PORT, controllers 100 above, e.g. for a 3.9
// cluster with KAFKA4_VERSION=3.9.1), or, when nothing answers there, one
// started now and stopped after the run.
func sharedKafka4(t *testing.T) *kafka4 {
	t.Helper()
	shared4.Do(func() {
		port := 29092
		if p := os.Getenv("KG_E2E_KAFKA4_PORT"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil {
				shared4.err = fmt.Errorf("KG_E2E_KAFKA4_PORT=%q: %w", p, err)
				return
			}
			port = n
		}
		k := &kafka4{nodes: 3, port: port, cport: port + 100, data: fmt.Sprintf("/tmp/kafkaguard-kafka4-data-%d", port)}
		shared4.k = k
		if _, err := k.script("status"); err == nil {
			return
		}
		if _, err := k.script("start"); err != nil {
			shared4.err = err
			return
		}
		shared4.started = true
	})
	if shared4.err != nil {
		t.Fatalf("Kafka 4 cluster: %v", shared4.err)
	}
	return shared4.k
}

func stopKafka4() {
	if shared4.started {
		shared4.k.script("stop")
	}
}

// newKafka4 starts a fresh private cluster of n nodes on free ports, wiped
// first and wiped again when the test passes (kept for the post-mortem, and
// for .ci/run to print, when it fails).
func newKafka4(t *testing.T, n int, env ...string) *kafka4 {
	t.Helper()
	k := &kafka4{nodes: n, extraEnv: env}
	// n consecutive free ports for clients and for controllers: take a free
	// port and check the next ones; bounded attempts.
	k.port, k.cport = consecutiveFreePorts(t, n), consecutiveFreePorts(t, n)
	k.data = fmt.Sprintf("/tmp/kafkaguard-kafka4-data-%d", k.port)
	if _, err := k.script("wipe"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := 1; i <= n; i++ {
				if raw, err := os.ReadFile(filepath.Join(k.data, "logs", fmt.Sprintf("node-%d.log", i))); err == nil {
					t.Logf("node %d log tail (%s):\n%s", i, k.data, tail(raw, 40))
				}
			}
			k.script("stop")
			return
		}
		if _, err := k.script("wipe"); err != nil {
			t.Error(err)
		}
	})
	if out, err := k.script("start"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("%s", strings.TrimSpace(out))
	}
	return k
}

func consecutiveFreePorts(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		p := freePort(t)
		ok := true
		for i := 1; i < n && ok; i++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// metadataV4Probe sends a Metadata v4 request (the oldest Kafka 4 serves) for
// no topics and waits for the answer with the right correlation id.
func metadataV4Probe(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	body := []byte{0, 3, 0, 4, 0, 0, 0x10, 0x92, 0, 5, 'p', 'r', 'o', 'b', 'e', 0, 0, 0, 0, 0}
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := c.Write(append(frame, body...)); err != nil {
		return err
	}
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("metadata v4: %w", err)
	}
	if corr := binary.BigEndian.Uint32(hdr[4:]); corr != 0x1092 {
		return fmt.Errorf("metadata v4: correlation id %d", corr)
	}
	return nil
}
