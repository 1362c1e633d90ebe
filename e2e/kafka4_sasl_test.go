package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// startSaslGuard is startGuard with every listener's sasl set to mode
// (passthrough or require).
func startSaslGuard(t *testing.T, upstreams []string, mode string) *guard {
	t.Helper()
	return launchGuard(t, upstreams, "    sasl: "+mode+"\n", nil)
}

// checkSaslLog fails the test if kafkaguard refused anything, logged a
// password, or never named the principal alice in a login line.
func checkSaslLog(t *testing.T, g *guard) {
	t.Helper()
	log := g.log()
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "refused client request") || strings.Contains(line, "source banned") {
			t.Errorf("kafkaguard refused: %s", line)
		}
	}
	if strings.Contains(log, "alice-secret") {
		t.Errorf("the password is in kafkaguard's log")
	}
	if !strings.Contains(log, `"principal":"alice"`) || !strings.Contains(log, "sasl login accepted by the broker") {
		t.Errorf("no login line naming the principal alice:\n%s", tail([]byte(log), 20))
	}
}

// TestKafka4SaslThroughGuard: franz-go (PLAIN, SCRAM-SHA-512) and kcat
// (PLAIN) log in through kafkaguard to the Kafka 4 cluster's SASL_PLAINTEXT
// listeners, produce and consume, with sasl: passthrough and sasl: require;
// kafkaguard refuses nothing and names the principal once the broker has
// accepted it. TestKafka4SaslSSLThroughGuard does the same over TLS.
func TestKafka4SaslThroughGuard(t *testing.T) {
	requireKafka4(t)
	s := sharedSecureKafka4(t)
	for _, mode := range []string{"passthrough", "require"} {
		t.Run(mode, func(t *testing.T) {
			g := startSaslGuard(t, s.addrs(s.ssl+200), mode)
			for _, c := range []secureCase{
				{"franz_plain", "SASL_PLAINTEXT", 200, "PLAIN", false},
				{"franz_scram512", "SASL_PLAINTEXT", 200, "SCRAM-SHA-512", false},
			} {
				t.Run(c.name, func(t *testing.T) {
					franzThroughGuard(t, g, c, fmt.Sprintf("h10-sasl-%s-%s-%d", mode, c.name, time.Now().UnixNano()))
				})
			}
			t.Run("kcat_plain", func(t *testing.T) {
				kcatThroughGuard(t, g, fmt.Sprintf("h10-sasl-%s-kcat-%d", mode, time.Now().UnixNano()))
			})
			t.Run("wrong_password", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cl, err := kgo.NewClient(kgo.SeedBrokers(g.addrs...), kgo.SASL(saslMechanism("SCRAM-SHA-512", "alice", "wrong")))
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				if err := cl.Ping(ctx); !errors.Is(err, kerr.SaslAuthenticationFailed) {
					t.Fatalf("wrong password through kafkaguard: %v, want SASL_AUTHENTICATION_FAILED", err)
				}
				_, body, err := httpGet("http://" + g.admin + "/metrics")
				if err != nil || !regexp.MustCompile(`kafkaguard_sasl_logins_total\{mechanism="scram",result="refused"\} [1-9]`).MatchString(body) {
					t.Errorf("no refused login counted (%v):\n%s", err, grepLines(body, "kafkaguard_sasl_logins_total"))
				}
			})
			checkSaslLog(t, g)
		})
	}
}

// TestKafka4SaslSSLThroughGuard: franz-go logs in with PLAIN and
// SCRAM-SHA-512 over TLS to kafkaguard, which terminates TLS, holds the
// connection to SASL until the broker accepts the login (sasl: require), and
// speaks TLS to the Kafka 4 cluster's SASL_SSL listeners; records go through
// and come back, kafkaguard refuses nothing and names the principal.
func TestKafka4SaslSSLThroughGuard(t *testing.T) {
	requireKafka4(t)
	s := sharedSecureKafka4(t)
	certs := tlstest.New(t)
	g := startTLSGuard(t, s.addrs(s.ssl+100), tlsSides{
		listener: listenerTLS(certs, "none"),
		upstream: fmt.Sprintf("{ca_file: %s}", filepath.Join(s.tls, "ca.crt")),
		sasl:     "require",
	})
	for _, c := range []secureCase{
		{"franz_plain_tls", "SASL_SSL", 100, "PLAIN", false},
		{"franz_scram512_tls", "SASL_SSL", 100, "SCRAM-SHA-512", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			franzThroughGuard(t, g, c, fmt.Sprintf("sasl-ssl-%s-%d", c.name, time.Now().UnixNano()),
				kgo.DialTLSConfig(certs.ClientConfig()))
		})
	}
	checkSaslLog(t, g)
	if m, err := soakScrape(g.admin, "kafkaguard_upstream_dial_errors_total", ""); err != nil || m[""] != 0 {
		t.Errorf("upstream dial errors %v (%v): the TLS dial to the SASL_SSL listener failed\n%s", m, err, g.logTail(20))
	}
}

// franzThroughGuard produces and consumes 20 records through g as alice with
// c's mechanism; more adds client options (TLS).
func franzThroughGuard(t *testing.T, g *guard, c secureCase, topic string, more ...kgo.Opt) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := append([]kgo.Opt{kgo.SeedBrokers(g.addrs...), kgo.ClientID("kafkaguard-e2e-sasl"),
		kgo.SASL(saslMechanism(c.mech, "alice", "alice-secret")), kgo.RetryTimeout(30 * time.Second)}, more...)
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, &kgo.Record{Value: fmt.Appendf(nil, "%s %d", c.name, i)})
	}
	franzProduceConsume(ctx, t, opts, topic, recs, "")
}

// franzProduceConsume produces recs (distinct values) to topic with a franz-go client made of opts, then
// consumes the topic from the start with another until it has seen every value (consumeDistinct).
func franzProduceConsume(ctx context.Context, t *testing.T, opts []kgo.Opt, topic string, recs []*kgo.Record, over string) {
	t.Helper()
	cl, err := kgo.NewClient(append(opts, kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic(topic))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce%s: %v", over, err)
	}
	cons, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	consumeDistinct(ctx, t, cons, len(recs), over)
}

// consumeDistinct polls cons until it has seen n distinct record values or ctx ends, and fails the test
// on a fetch error other than the deadline or when fewer came; over names the case in those failures
// ("" for none, else " over <case>").
func consumeDistinct(ctx context.Context, t *testing.T, cons *kgo.Client, n int, over string) {
	t.Helper()
	seen := map[string]bool{}
	for len(seen) < n && ctx.Err() == nil {
		fs := cons.PollFetches(ctx)
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				t.Fatalf("consume%s: %v", over, e.Err)
			}
		}
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
	}
	if len(seen) != n {
		t.Fatalf("consumed %d of %d records%s", len(seen), n, over)
	}
}

func kcatThroughGuard(t *testing.T, g *guard, topic string) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat not installed (apt-get install kcat): %v", err)
	}
	args := []string{"-b", strings.Join(g.addrs, ","), "-X", "client.id=kafkaguard-e2e-kcat-sasl",
		"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
		"-X", "sasl.username=alice", "-X", "sasl.password=alice-secret"}
	kcatProduceConsume(t, args, topic, "kcat", "")
}

// kcatProduceConsume produces 20 keyed records ("k<i>", "<label> <i>") to topic with kcat and acks=all,
// args naming the brokers and security settings, consumes them from the beginning, and fails the test
// unless all 20 come back; over names the case in that failure ("" for none, else " over <case>").
func kcatProduceConsume(t *testing.T, args []string, topic, label, over string) {
	t.Helper()
	run := func(stdin []byte, more ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "kcat", append(append([]string(nil), args...), more...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || strings.Contains(stderr.String(), "ERROR") {
			t.Fatalf("kcat %v: %v\n%s", more, err, stderr.String())
		}
		return out
	}
	var in bytes.Buffer
	for i := range 20 {
		fmt.Fprintf(&in, "k%d\t%s %d\n", i, label, i)
	}
	run(in.Bytes(), "-P", "-t", topic, "-K", "\t", "-X", "request.required.acks=-1")
	out := run(nil, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n")
	if got := strings.Count(string(out), "\n"); got != 20 {
		t.Fatalf("kcat consumed %d of 20 records%s:\n%s", got, over, out)
	}
}

// grepLines returns the lines of s that hold sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// rawConn is a Kafka connection spoken by hand, for the SaslHandshake v0
// exchange that no packaged client still uses.
type rawConn struct {
	net.Conn
	corr int32
}

func (c *rawConn) frame() ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	var sz [4]byte
	if _, err := io.ReadFull(c, sz[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(sz[:])
	if n > 8<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	return b, err
}

func (c *rawConn) raw(b []byte) error {
	c.SetWriteDeadline(time.Now().Add(15 * time.Second))
	_, err := c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...))
	return err
}

func (c *rawConn) request(req kmsg.Request) (kmsg.Response, error) {
	c.corr++
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("kafkaguard-e2e-v0"))
	c.SetWriteDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write(f.AppendRequest(nil, req, c.corr)); err != nil {
		return nil, err
	}
	b, err := c.frame()
	if err != nil {
		return nil, err
	}
	if len(b) < 4 || int32(binary.BigEndian.Uint32(b)) != c.corr {
		return nil, fmt.Errorf("response to %s: bad correlation id", kmsg.NameForKey(req.Key()))
	}
	b = b[4:]
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if resp.IsFlexible() && req.Key() != int16(kmsg.ApiVersions) {
		_, w := binary.Uvarint(b)
		b = b[w:]
	}
	return resp, resp.ReadFrom(b)
}

// oneRecordBatch is a v2 record batch holding one record with value v.
func oneRecordBatch(v []byte) []byte {
	r := kmsg.NewRecord()
	r.Value = v
	body := r.AppendTo(nil)
	r.Length = int32(len(body) - 1) // the length varint was one byte (0)
	body = r.AppendTo(nil)
	b := kmsg.NewRecordBatch()
	b.Magic, b.ProducerID, b.ProducerEpoch, b.FirstSequence, b.NumRecords = 2, -1, -1, -1, 1
	b.FirstTimestamp = time.Now().UnixMilli()
	b.MaxTimestamp = b.FirstTimestamp
	b.Records = body
	raw := b.AppendTo(nil)
	b.Length = int32(len(raw) - 12)
	raw = b.AppendTo(nil)
	b.CRC = int32(crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b.AppendTo(nil)
}

// TestKafka4SaslV0 logs in with SaslHandshake v0 (PLAIN and SCRAM-SHA-512,
// the tokens written by franz-go's mechanisms, sent as bare frames) through
// kafkaguard to the Kafka 4 cluster's SASL_PLAINTEXT listener and produces a
// record, several times from one address: no offence, no ban, and the
// record is there to read. Kafka 4 still serves SaslHandshake v0 (its
// ApiVersions range is logged).
func TestKafka4SaslV0(t *testing.T) {
	requireKafka4(t)
	s := sharedSecureKafka4(t)
	for _, mode := range []string{"passthrough", "require"} {
		t.Run(mode, func(t *testing.T) {
			g := startSaslGuard(t, s.addrs(s.ssl+200), mode)
			topic := fmt.Sprintf("h10-sasl-v0-%s-%d", mode, time.Now().UnixNano())
			mech := saslMechanism("PLAIN", "alice", "alice-secret")
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			admin, err := kgo.NewClient(kgo.SeedBrokers(g.addrs...), kgo.SASL(mech))
			if err != nil {
				t.Fatal(err)
			}
			defer admin.Close()
			create := kmsg.NewCreateTopicsRequest()
			ct := kmsg.NewCreateTopicsRequestTopic()
			ct.Topic, ct.NumPartitions, ct.ReplicationFactor = topic, 1, 1
			create.Topics = append(create.Topics, ct)
			if _, err := create.RequestWith(ctx, admin); err != nil {
				t.Fatalf("create topic: %v", err)
			}
			var leader int32 = -1
			for leader < 0 && ctx.Err() == nil {
				meta := kmsg.NewMetadataRequest()
				mt := kmsg.NewMetadataRequestTopic()
				mt.Topic = kmsg.StringPtr(topic)
				meta.Topics = append(meta.Topics, mt)
				resp, err := meta.RequestWith(ctx, admin)
				if err == nil && len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == 1 && resp.Topics[0].Partitions[0].ErrorCode == 0 {
					leader = resp.Topics[0].Partitions[0].Leader
				} else {
					time.Sleep(100 * time.Millisecond)
				}
			}
			if leader < 1 || int(leader) > len(g.addrs) {
				t.Fatalf("leader of %s: %d", topic, leader)
			}
			addr := g.addrs[leader-1] // node N's listener is the N-th upstream

			const logins = 8 // more than offences_before_ban (5): one offence each would earn a ban
			for i := range logins {
				m := "PLAIN"
				if i%2 == 1 {
					m = "SCRAM-SHA-512"
				}
				if err := v0LoginAndProduce(ctx, t, addr, m, topic, fmt.Appendf(nil, "v0 %s %d", m, i), i == 0); err != nil {
					t.Fatalf("login %d (%s): %v\n%s", i+1, m, err, g.logTail(20))
				}
			}
			cons, err := kgo.NewClient(kgo.SeedBrokers(g.addrs...), kgo.SASL(mech), kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			seen := 0
			for seen < logins && ctx.Err() == nil {
				fs := cons.PollFetches(ctx)
				fs.EachRecord(func(*kgo.Record) { seen++ })
			}
			if seen != logins {
				t.Fatalf("read back %d of %d records produced after v0 logins", seen, logins)
			}
			checkSaslLog(t, g)
		})
	}
}

// v0LoginAndProduce connects to addr, logs in with SaslHandshake v0 and
// mechanism mech (bare token frames), and produces value to topic's
// partition 0 with acks=-1.
func v0LoginAndProduce(ctx context.Context, t *testing.T, addr, mech, topic string, value []byte, logVersions bool) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	c := &rawConn{Conn: nc}
	av := kmsg.NewApiVersionsRequest()
	av.Version = 0
	resp, err := c.request(&av)
	if err != nil {
		return fmt.Errorf("ApiVersions: %w", err)
	}
	for _, k := range resp.(*kmsg.ApiVersionsResponse).ApiKeys {
		if k.ApiKey == int16(kmsg.SASLHandshake) && logVersions {
			t.Logf("Kafka 4 (through kafkaguard) serves SaslHandshake v%d..v%d", k.MinVersion, k.MaxVersion)
		}
	}
	hs := kmsg.NewSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 0, mech
	hr, err := c.request(&hs)
	if err != nil {
		return fmt.Errorf("SaslHandshake v0: %w", err)
	}
	if code := hr.(*kmsg.SASLHandshakeResponse).ErrorCode; code != 0 {
		return fmt.Errorf("SaslHandshake v0: error %d", code)
	}
	sess, tok, err := saslMechanism(mech, "alice", "alice-secret").Authenticate(ctx, addr)
	if err != nil {
		return err
	}
	for done := false; !done; {
		if err := c.raw(tok); err != nil {
			return fmt.Errorf("token: %w", err)
		}
		reply, err := c.frame()
		if err != nil {
			return fmt.Errorf("reply to a token: %w", err)
		}
		if done, tok, err = sess.Challenge(reply); err != nil {
			return fmt.Errorf("challenge: %w", err)
		}
	}
	p := kmsg.NewProduceRequest()
	p.Version, p.Acks, p.TimeoutMillis = 7, -1, 10000
	pt := kmsg.NewProduceRequestTopic()
	pt.Topic = topic
	pp := kmsg.NewProduceRequestTopicPartition()
	pp.Records = oneRecordBatch(value)
	pt.Partitions = append(pt.Partitions, pp)
	p.Topics = append(p.Topics, pt)
	pr, err := c.request(&p)
	if err != nil {
		return fmt.Errorf("Produce after the login: %w", err)
	}
	if code := pr.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode; code != 0 {
		return fmt.Errorf("Produce after the login: error %d", code)
	}
	return nil
}
