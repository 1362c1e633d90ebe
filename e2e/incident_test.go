package e2e

import (
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// declaredSize is the seed's frame size: 50 MiB plus one byte, under Kafka
// 0.9's socket.request.max.bytes (100 MiB), so the broker allocates it.
const declaredSize = 50<<20 + 1

// offenderIP is the attacker's source address (any of 127.0.0.0/8 works on
// loopback), apart from the well-behaved clients on 127.0.0.1.
const offenderIP = "127.0.0.66"

// attackPayloads are the seed's two senders: a size prefix declaring 50 MiB+1
// and ONE byte (struct.pack('!is', ...)), and the same size followed by a
// valid request header (Metadata v0, correlation id 7, client id "oom").
func attackPayloads() [][]byte {
	raw := binary.BigEndian.AppendUint32(nil, declaredSize)
	raw = append(raw, 'x')
	hdr := binary.BigEndian.AppendUint32(nil, declaredSize)
	hdr = append(hdr, 0, 3, 0, 0, 0, 0, 0, 7, 0, 3, 'o', 'o', 'm') // Metadata v0, corr 7, client "oom"
	return [][]byte{raw, hdr}
}

// attack opens 8 fresh connections per payload from src (nil: any) to addr,
// writes the payload and leaves them open, as the seed's client does. It
// returns the connections that were accepted.
func attack(t *testing.T, addr string, src net.Addr) []net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: src}
	var conns []net.Conn
	refused := 0
	defer func() {
		if refused > 0 {
			t.Logf("%d attack connections to %s refused at connect (banned source)", refused, addr)
		}
	}()
	for _, p := range attackPayloads() {
		for range 8 {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				refused++
				continue
			}
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(p); err != nil {
				t.Logf("attack write: %v", err)
			}
			conns = append(conns, c)
		}
	}
	return conns
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// TestIncident reproduces the seed's incident on a real Kafka 0.9.0.1 broker
// (-XX:MaxDirectMemorySize=100m), then shows kafkaguard preventing it.
func TestIncident(t *testing.T) {
	requireE2E(t)
	b := newBroker(t)

	t.Run("direct", func(t *testing.T) {
		pid := b.pid(t)
		before := rssKiB(t, pid)
		conns := attack(t, b.Addr(), nil)
		defer closeAll(conns)
		sawOOM := eventually(60*time.Second, 500*time.Millisecond, func() bool {
			return directOOM.MatchString(b.log(t))
		})
		// Let the attack land on every network thread: wait until no new
		// OutOfMemoryError has been logged for 3s (bounded).
		last, quiet := -1, 0
		for range 60 {
			n, _, _ := oomCounts(b.log(t))
			if n == last {
				quiet++
			} else {
				last, quiet = n, 0
			}
			if quiet >= 6 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		after := rssKiB(t, pid)
		all, direct, heap := oomCounts(b.log(t))
		t.Logf("FIGURES direct attack: broker RSS %d KiB -> %d KiB (+%d MiB); OutOfMemoryError lines %d (direct buffer memory %d, heap %d); %d attack connections",
			before, after, (after-before)/1024, all, direct, heap, len(conns))
		if !sawOOM {
			t.Fatalf("broker log shows no OutOfMemoryError about direct buffer memory within 60s of the attack (the test could not fail)")
		}
		// The network threads that hit the OOM die ("Processor got uncaught
		// exception") and the connections Kafka assigns to them are never
		// served. The acceptor deals new connections round-robin over its 3
		// network threads, so 3 fresh connections in a row reach every thread:
		// at least one must go unanswered.
		failed := 0
		for range 3 {
			if err := metadataProbe(b.Addr(), 5*time.Second); err != nil {
				failed++
				t.Logf("metadata after the attack: %v", err)
			}
		}
		t.Logf("FIGURES direct attack: %d of 3 metadata requests failed after the OOM", failed)
		if failed == 0 {
			t.Errorf("broker answered 3 of 3 metadata requests on fresh connections after the OOM; want it to stop serving")
		}
	})
	if t.Failed() {
		return
	}

	// A fresh broker: stopped, wiped, started.
	b.wipe(t)
	b.start(t)

	t.Run("through_kafkaguard", func(t *testing.T) {
		g := startGuard(t, []string{b.Addr()})
		pid := b.pid(t)
		topic := "incident-guarded"

		// Warm up: the broker's RSS grows with its first traffic anyway.
		warm := genRecords(1, "warm", 200, 512, false)
		produceAll(t, kgoClient(t, g.addrs, true), topic, warm)
		sameRecords(t, "warm-up through kafkaguard", warm, consumeAll(t, g.addrs, true, topic, len(warm)))

		before := rssKiB(t, pid)
		src := &net.TCPAddr{IP: net.ParseIP(offenderIP)}
		conns := attack(t, g.addrs[0], src)
		open := 0
		for _, c := range conns {
			if awaitClose(c, 15*time.Second) != nil {
				open++
			}
		}
		closeAll(conns)
		// Second round: by now the offender should be banned and refused at accept.
		conns2 := attack(t, g.addrs[0], src)
		for _, c := range conns2 {
			if awaitClose(c, 15*time.Second) != nil {
				open++
			}
		}
		closeAll(conns2)
		time.Sleep(3 * time.Second) // give the broker a chance to show any effect
		after := rssKiB(t, pid)
		all, direct, heap := oomCounts(b.log(t))
		tooLarge := metricSum(t, g.admin, "kafkaguard_frames_rejected_total", map[string]string{"reason": "too_large"})
		refused := metricSum(t, g.admin, "kafkaguard_connections_refused_total", nil)
		t.Logf("FIGURES through kafkaguard: broker RSS %d KiB -> %d KiB (%+d KiB); OutOfMemoryError lines %d (direct %d, heap %d); 32 attack connections attempted, %d accepted; frames_rejected_total{reason=too_large} %v; connections_refused_total %v",
			before, after, after-before, all, direct, heap, len(conns)+len(conns2), tooLarge, refused)

		if open > 0 {
			t.Errorf("%d attack connections were still open 15s after sending an over-limit size; want every one closed", open)
		}
		if all > 0 {
			t.Errorf("broker log shows %d OutOfMemoryError lines behind kafkaguard; want none", all)
		}
		const maxGrowthKiB = 64 << 10
		if after-before > maxGrowthKiB {
			t.Errorf("broker RSS grew by %d KiB behind kafkaguard; want under %d KiB", after-before, maxGrowthKiB)
		}
		if tooLarge < 5 {
			t.Errorf("kafkaguard_frames_rejected_total{reason=\"too_large\"} = %v; want at least 5 (offences before the ban)", tooLarge)
		}

		// The broker still serves, through kafkaguard, to well-behaved clients.
		if err := metadataProbe(g.addrs[0], 10*time.Second); err != nil {
			t.Errorf("metadata through kafkaguard after the attack: %v", err)
		}
		recs := genRecords(2, "after", 300, 1024, false)
		produceAll(t, kgoClient(t, g.addrs, true), topic, recs)
		got := consumeAll(t, g.addrs, true, topic, len(warm)+len(recs))
		sameRecords(t, "produce+consume through kafkaguard after the attack", append(warm, recs...), got)

		t.Run("offender_banned", func(t *testing.T) {
			code, body, err := httpGet("http://" + g.admin + "/bans")
			if err != nil {
				t.Fatalf("GET /bans: %v", err)
			}
			if code == http.StatusNotFound {
				t.Fatalf("GET /bans answers 404: the abuse gate is off in the e2e config")
			}
			var bans []struct {
				Addr   string `json:"addr"`
				Reason string `json:"reason"`
				Count  int    `json:"count"`
			}
			if err := json.Unmarshal([]byte(body), &bans); err != nil {
				t.Fatalf("GET /bans: %d %q: %v", code, body, err)
			}
			t.Logf("GET /bans: %s", strings.TrimSpace(body))
			var found bool
			for _, b := range bans {
				if b.Addr == offenderIP {
					found = true
				}
				if b.Addr == "127.0.0.1" {
					t.Errorf("the well-behaved clients' address 127.0.0.1 is banned: %+v", b)
				}
			}
			if !found {
				t.Errorf("offender %s not in /bans after %d over-limit frames (offences_before_ban 5): %s",
					offenderIP, len(conns)+len(conns2), body)
			}
			if n := metricSum(t, g.admin, "kafkaguard_bans_total", nil); n < 1 {
				t.Errorf("kafkaguard_bans_total = %v, want >= 1", n)
			}
		})
	})
}
