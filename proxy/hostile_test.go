package proxy

import (
	"context"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/limits"
)

// be32 returns v as four big-endian bytes.
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// Each hostile input closes only its own connection, with its own metric
// reason, while a clean client on the same listener keeps its connection
// and keeps producing.
func TestHostileInputs(t *testing.T) {
	h := newHarness(t, harnessOpts{
		brokers: 1,
		policy: limits.PolicyOptions{
			MaxRequestBytes: 1 << 20, MaxClientIDBytes: 64, MaxDrainBytes: 4 << 20,
			Deny: []int16{20}, // DeleteTopics
		},
		mutate: func(o *Options) {
			o.HeaderTimeout = 300 * time.Millisecond
			o.FrameTimeout = 600 * time.Millisecond
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clean := h.client(kgo.DefaultProduceTopic("clean"))
	if err := clean.ProduceSync(ctx, kgo.StringRecord("first")).FirstErr(); err != nil {
		t.Fatal(err)
	}

	metadata := func(version int16) []byte {
		r := kmsg.NewPtrMetadataRequest()
		r.Version = version
		return r.AppendTo(nil)
	}
	valid := rawRequest(3, 1, 1, "ok", metadata(1))
	clientIDOverrun := rawRequest(3, 1, 1, "", nil)
	binary.BigEndian.PutUint16(clientIDOverrun[12:], 40) // client id of 40 bytes in a 10-byte header
	acksZero := rawRequest(0, 3, 1, "p", []byte{0xff, 0xff, 0, 0})
	binary.BigEndian.PutUint32(acksZero, 2<<20)
	tlsHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

	cases := []struct {
		name   string
		send   []byte
		reason string
		api    string
		// forwarded: the valid part before the garbage reaches the broker.
		forwarded bool
	}{
		{"negative size", be32(0xffffffff), "bad_size", "none", false},
		{"zero size", be32(0), "bad_size", "none", false},
		{"shorter than a header", append(be32(5), 0, 3, 0, 1, 0), "bad_size", "none", false},
		{"size 0x7fffffff", append(be32(0x7fffffff), 0, 0), "too_large", "none", false},
		{"oversized Metadata", append(be32(2<<20), valid[4:]...), "too_large", "Metadata", false},
		{"oversized acks=0 Produce", acksZero, "too_large", "Produce", false},
		{"client id runs past the frame", clientIDOverrun, "malformed_header", "Metadata", false},
		{"client id too long", rawRequest(3, 1, 1, string(make([]byte, 100)), nil), "client_id_too_long", "Metadata", false},
		{"HTTP request line", []byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), "not_kafka", "none", false},
		{"TLS ClientHello", tlsHello, "tls_on_plaintext", "none", false},
		{"unknown api key", rawRequest(999, 0, 1, "x", nil), "unknown_api", "unknown", false},
		{"version out of range", rawRequest(3, 999, 1, "x", nil), "bad_version", "Metadata", false},
		{"denied api", rawRequest(20, 1, 1, "x", []byte{0, 0, 0, 0, 0, 0, 0, 0}), "denied_api", "DeleteTopics", false},
		{"partial size then silence", []byte{0, 0}, "header_timeout", "none", false},
		{"partial header then silence", append(be32(100), 0, 3, 0), "header_timeout", "none", false},
		{"partial body then silence", rawRequest(3, 1, 1, "x", make([]byte, 500))[:100], "frame_timeout", "Metadata", false},
		{"valid frame then garbage", append(append([]byte{}, valid...), "AAAAAAAA"...), "too_large", "none", true},
	}
	conns := h.counter("kafkaguard_connections_total", nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": tc.reason, "api": tc.api})
			closed := h.counter("kafkaguard_connections_closed_total", map[string]string{"reason": tc.reason})
			fwd := h.counter("kafkaguard_frames_forwarded_total", map[string]string{"api": "Metadata"})
			c, err := net.Dial("tcp", h.addrs[0])
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns++
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c, 5*time.Second)
			waitFor(t, 5*time.Second, "metric "+tc.reason, func() bool {
				return h.counter("kafkaguard_frames_rejected_total",
					map[string]string{"reason": tc.reason, "api": tc.api}) == before+1
			})
			waitFor(t, 5*time.Second, "close counted as "+tc.reason, func() bool {
				return h.counter("kafkaguard_connections_closed_total", map[string]string{"reason": tc.reason}) == closed+1
			})
			if got := h.counter("kafkaguard_frames_forwarded_total", map[string]string{"api": "Metadata"}); (got == fwd+1) != tc.forwarded {
				t.Errorf("forwarded Metadata %v -> %v; want forwarded=%v", fwd, got, tc.forwarded)
			}
			if err := clean.ProduceSync(ctx, kgo.StringRecord(tc.name)).FirstErr(); err != nil {
				t.Fatalf("clean client after %s: %v", tc.name, err)
			}
		})
	}
	if got := h.counter("kafkaguard_connections_total", nil); got != conns {
		t.Errorf("connections_total = %v, want %v: the clean client reconnected", got, conns)
	}
}

// Idle connections are not offenders: the idle timeout closes them, they
// cost no upstream connection and no pooled chunk, and count no rejection.
func TestThousandsOfIdleConnections(t *testing.T) {
	const n = 2000
	h := newHarness(t, harnessOpts{
		brokers: 1,
		mutate:  func(o *Options) { o.IdleTimeout = 1500 * time.Millisecond },
	})
	base := h.counter("kafkaguard_connections_active", nil)
	total := h.counter("kafkaguard_connections_total", nil)
	var cs []net.Conn
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", h.addrs[0])
		if err != nil {
			t.Fatalf("dial after %d: %v", len(cs), err)
		}
		cs = append(cs, c)
	}
	// Accepted, not open: on a loaded machine the first may reach their
	// idle timeout before the last is dialled.
	waitFor(t, 10*time.Second, "all idle connections accepted", func() bool {
		return h.counter("kafkaguard_connections_total", nil) >= total+n
	})
	if h.pool.InUse() != 0 || h.dials.Load() != 0 {
		t.Errorf("idle connections hold %d pool bytes and %d upstream dials; want none", h.pool.InUse(), h.dials.Load())
	}
	// A clean client is served while they sit there.
	produceConsume(t, h, "idle-neighbour", 5, 10)
	waitFor(t, 15*time.Second, "idle timeout", func() bool {
		return h.counter("kafkaguard_connections_active", nil) <= base+2 // the test's own clients
	})
	if got := h.counter("kafkaguard_connections_closed_total", map[string]string{"reason": "idle_timeout"}); got < n {
		t.Errorf("connections_closed_total{reason=idle_timeout} = %v, want at least %d", got, n)
	}
	if got := h.counter("kafkaguard_frames_rejected_total", nil); got != 0 {
		t.Errorf("idle connections counted %v rejections, want 0", got)
	}
}
