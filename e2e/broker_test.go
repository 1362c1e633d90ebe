package e2e

import (
	"bytes"
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
	"testing"
	"time"
)

// broker is one instance of deploy/testing/kafka-0.9.sh: a ZooKeeper and an
// Apache Kafka 0.9.0.1 broker on loopback, with their own ports and data dir.
type broker struct {
	port, zkPort int
	data         string // KAFKA_DATA: data, logs and pid files
}

// Addr is the broker's host:port.
func (b *broker) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// script runs the helper script with this instance's settings.
func (b *broker) script(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "deploy/testing/kafka-0.9.sh"), cmd)
	c.Env = append(os.Environ(),
		"KAFKA_PORT="+strconv.Itoa(b.port),
		"ZK_PORT="+strconv.Itoa(b.zkPort),
		"KAFKA_DATA="+b.data,
	)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kafka-0.9.sh %s: %w\n%s", cmd, err, out)
	}
	return string(out), nil
}

func (b *broker) start(t *testing.T) {
	t.Helper()
	out, err := b.script("start")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", strings.TrimSpace(out))
}

func (b *broker) stop(t *testing.T) {
	t.Helper()
	if _, err := b.script("stop"); err != nil {
		t.Error(err)
	}
}

// wipe stops the instance and deletes its data and logs: the next start is a
// fresh broker with an empty log.
func (b *broker) wipe(t *testing.T) {
	t.Helper()
	if _, err := b.script("wipe"); err != nil {
		t.Fatal(err)
	}
}

// pid is the broker JVM's process id, from the script's pid file.
func (b *broker) pid(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(b.data, "kafka.pid"))
	if err != nil {
		t.Fatalf("broker pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("broker pid: %v", err)
	}
	return pid
}

// log returns the broker's log so far.
func (b *broker) log(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(b.data, "logs", "kafka.log"))
	if err != nil {
		t.Fatalf("broker log: %v", err)
	}
	return string(raw)
}

var (
	oomLine      = regexp.MustCompile(`OutOfMemoryError`)
	directOOM    = regexp.MustCompile(`(?i)OutOfMemoryError.*direct buffer memory`)
	heapSpaceOOM = regexp.MustCompile(`OutOfMemoryError: Java heap space`)
)

// oomCounts counts OutOfMemoryError lines in a broker log: all, those about
// direct buffer memory, and those about the heap.
func oomCounts(log string) (all, direct, heap int) {
	return len(oomLine.FindAllStringIndex(log, -1)), len(directOOM.FindAllStringIndex(log, -1)),
		len(heapSpaceOOM.FindAllStringIndex(log, -1))
}

// newBroker starts a fresh private instance (wiped first) on free ports. It is
// stopped when the test ends and wiped if the test passed; a failed test leaves
// its logs in /tmp/kafkaguard-kafka-data-PORT/logs, where .ci/run prints them from.
func newBroker(t *testing.T) *broker {
	t.Helper()
	b := &broker{port: freePort(t), zkPort: freePort(t)}
	b.data = fmt.Sprintf("/tmp/kafkaguard-kafka-data-%d", b.port)
	if _, err := b.script("wipe"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if raw, err := os.ReadFile(filepath.Join(b.data, "logs", "kafka.log")); err == nil {
				t.Logf("broker log tail (%s):\n%s", b.data, tail(raw, 60))
			}
			b.stop(t) // keep data and logs for the post-mortem
			return
		}
		if _, err := b.script("wipe"); err != nil {
			t.Error(err)
		}
	})
	b.start(t)
	return b
}

var shared struct {
	sync.Once
	b       *broker
	started bool
	err     error
}

// sharedBroker is the long-lived 0.9 broker the client tests share: the one
// .ci/run started (KG_E2E_BROKER, default 127.0.0.1:19092), or, when
// nothing answers there, one started now with the script's defaults and stopped
// after the run.
func sharedBroker(t *testing.T) *broker {
	t.Helper()
	shared.Do(func() {
		addr := os.Getenv("KG_E2E_BROKER")
		if addr == "" {
			addr = "127.0.0.1:19092"
		}
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			shared.err = err
			return
		}
		port, _ := strconv.Atoi(p)
		shared.b = &broker{port: port, zkPort: 2181, data: fmt.Sprintf("/tmp/kafkaguard-kafka-data-%d", port)}
		if metadataProbe(addr, 10*time.Second) == nil {
			return
		}
		if _, err := shared.b.script("start"); err != nil {
			shared.err = err
			return
		}
		shared.started = true
	})
	if shared.err != nil {
		t.Fatalf("shared broker: %v", shared.err)
	}
	return shared.b
}

func stopSharedBroker() {
	if shared.started {
		shared.b.script("stop")
	}
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
