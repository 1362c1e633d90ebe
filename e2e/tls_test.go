package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// tlsSides says what kafkaguard's listeners and upstream dials speak.
type tlsSides struct {
	// listener is the YAML of each listener's tls section ("" = plaintext).
	listener string
	// upstream is the YAML of each listener's upstream_tls section.
	upstream string
	// sasl is each listener's sasl mode ("" = the default, passthrough).
	sasl string
	// lenient bans only after 100 offences: kcat retries a refused
	// handshake, and bad-client cases sharing a source must not ban each
	// other.
	lenient bool
}

// startTLSGuard runs kafkaguard as startGuard does, with each listener's tls
// and upstream_tls sections from sides and a 3 s handshake timeout.
func startTLSGuard(t *testing.T, upstreams []string, sides tlsSides) *guard {
	t.Helper()
	var extra strings.Builder
	if sides.listener != "" {
		fmt.Fprintf(&extra, "    tls: %s\n", sides.listener)
	}
	if sides.upstream != "" {
		fmt.Fprintf(&extra, "    upstream_tls: %s\n", sides.upstream)
	}
	if sides.sasl != "" {
		fmt.Fprintf(&extra, "    sasl: %s\n", sides.sasl)
	}
	return launchGuard(t, upstreams, extra.String(), func(cfg string) string {
		cfg = strings.Replace(cfg, "shutdown: 5s}", "shutdown: 5s, tls_handshake: 3s}", 1)
		if sides.lenient {
			cfg = strings.Replace(cfg, "offences_before_ban: 5", "offences_before_ban: 100", 1)
		}
		if !strings.Contains(cfg, "tls_handshake: 3s") || sides.lenient && !strings.Contains(cfg, "offences_before_ban: 100") {
			t.Fatal("guardConfig changed: set tls_handshake and offences_before_ban another way")
		}
		return cfg
	})
}

// listenerTLS is the tls section serving certs' server certificate with
// client_auth auth.
func listenerTLS(certs *tlstest.Certs, auth string) string {
	return fmt.Sprintf("{cert_file: %s, key_file: %s, client_ca_file: %s, client_auth: %s}",
		certs.ServerFiles.Cert, certs.ServerFiles.Key, certs.CAFile, auth)
}

// kcatTLS is kcat's -X for certs' CA, and with mtls for its client certificate.
func kcatTLS(certs *tlstest.Certs, client *tlstest.Files) []string {
	args := []string{"-X", "security.protocol=ssl", "-X", "ssl.ca.location=" + certs.CAFile}
	if client != nil {
		args = append(args, "-X", "ssl.certificate.location="+client.Cert, "-X", "ssl.key.location="+client.Key)
	}
	return args
}

// runKcat runs kcat against addr with args, within 60 s, and returns its
// stdout and stderr.
func runKcat(t *testing.T, addr string, stdin []byte, args ...string) (string, string, error) {
	t.Helper()
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat not installed (apt-get install kcat): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kcat", append([]string{"-b", addr, "-X", "client.id=kafkaguard-e2e-tls"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// kcatRoundTrip produces 20 records with kcat and consumes them back.
func kcatRoundTrip(t *testing.T, addr, topic string, tlsArgs []string) {
	t.Helper()
	var in bytes.Buffer
	for i := range 20 {
		fmt.Fprintf(&in, "k%d\t%s %d %s\n", i, topic, i, strings.Repeat("x", i*300))
	}
	if _, stderr, err := runKcat(t, addr, in.Bytes(), append(tlsArgs, "-P", "-t", topic, "-K", "\t", "-X", "request.required.acks=-1")...); err != nil || strings.Contains(stderr, "ERROR") {
		t.Fatalf("kcat produce: %v\n%s", err, stderr)
	}
	out, stderr, err := runKcat(t, addr, nil, append(tlsArgs, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n")...)
	if err != nil || strings.Contains(stderr, "ERROR") {
		t.Fatalf("kcat consume: %v\n%s", err, stderr)
	}
	if got := strings.Count(out, "\n"); got != 20 {
		t.Fatalf("kcat consumed %d of 20 records:\n%s", got, out)
	}
}

// franzRoundTrip produces 50 records with franz-go and consumes them back.
func franzRoundTrip(t *testing.T, addr, topic string, cfg *tls.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.DialTLSConfig(cfg), kgo.ClientID("kafkaguard-e2e-tls"),
		kgo.RetryTimeout(30 * time.Second)}
	var recs []*kgo.Record
	for i := range 50 {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "%d", i), Value: bytes.Repeat([]byte{byte(i)}, i*1000)})
	}
	franzProduceConsume(ctx, t, opts, topic, recs, " over TLS")
}

// rejected reads kafkaguard_frames_rejected_total{reason} from the admin.
func (g *guard) rejected(t *testing.T, reason string) float64 {
	t.Helper()
	m, err := soakScrape(g.admin, "kafkaguard_frames_rejected_total", "reason")
	if err != nil {
		t.Fatal(err)
	}
	return m[reason]
}

// TestTLSClients runs kcat and franz-go through kafkaguard over TLS and
// mTLS, to a kfake cluster spoken to over plaintext and over TLS, and
// checks that kafkaguard names a plaintext client, a client certificate
// from an unknown CA, an expired one, and a handshake that never finishes,
// in its log and in the reason metric.
func TestTLSClients(t *testing.T) {
	requireE2E(t)
	certs := tlstest.New(t)
	for _, tc := range []struct {
		name        string
		auth        string
		brokerTLS   bool
		clientCerts bool
	}{
		{"tls to plaintext broker", "none", false, false},
		{"mtls to tls broker", "require", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []kfake.Opt{kfake.NumBrokers(2), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2)}
			sides := tlsSides{listener: listenerTLS(certs, tc.auth), lenient: true}
			if tc.brokerTLS {
				opts = append(opts, kfake.TLS(certs.ServerConfig()))
				sides.upstream = fmt.Sprintf("{ca_file: %s, cert_file: %s, key_file: %s}", certs.CAFile, certs.ClientFiles.Cert, certs.ClientFiles.Key)
			}
			c, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			g := startTLSGuard(t, c.ListenAddrs(), sides)
			var client *tlstest.Files
			cfg := certs.ClientConfig()
			if tc.clientCerts {
				client = &certs.ClientFiles
				cfg.Certificates = []tls.Certificate{certs.Client.TLS}
			}
			topic := "h9-tls-" + strings.ReplaceAll(tc.name, " ", "-")
			t.Run("kcat", func(t *testing.T) { kcatRoundTrip(t, g.addrs[0], topic+"-kcat", kcatTLS(certs, client)) })
			t.Run("franz-go", func(t *testing.T) { franzRoundTrip(t, g.addrs[0], topic+"-franz", cfg) })
			if tc.clientCerts && !strings.Contains(g.log(), `"tls_subject":"CN=client,O=kafkaguard-test"`) {
				t.Errorf("no connection line names the client certificate's subject:\n%s", g.logTail(20))
			}
			if n := g.rejected(t, "tls_handshake_failed") + g.rejected(t, "plaintext_on_tls"); n != 0 {
				t.Errorf("%v handshakes refused for real clients:\n%s", n, g.logTail(20))
			}
			if !tc.clientCerts {
				return
			}
			for _, bad := range []struct {
				name, reason, log string
				run               func()
			}{
				{"plaintext kcat", "plaintext_on_tls", "security.protocol=PLAINTEXT", func() {
					runKcat(t, g.addrs[0], nil, "-L", "-m", "3", "-X", "socket.timeout.ms=3000")
				}},
				{"unknown ca certificate", "tls_handshake_failed", "unknown authority", func() {
					runKcat(t, g.addrs[0], nil, append(kcatTLS(certs, &certs.UnknownFiles), "-L", "-m", "3")...)
				}},
				{"expired certificate", "tls_handshake_failed", "expired", func() {
					runKcat(t, g.addrs[0], nil, append(kcatTLS(certs, &certs.ExpiredFiles), "-L", "-m", "3")...)
				}},
				{"handshake never finishes", "tls_handshake_timeout", "tls handshake timed out", func() {
					cn, err := net.DialTimeout("tcp", g.addrs[0], 2*time.Second)
					if err != nil {
						t.Fatal(err)
					}
					defer cn.Close()
					cn.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01})
					cn.SetReadDeadline(time.Now().Add(10 * time.Second))
					var b [16]byte
					cn.Read(b[:]) // returns when kafkaguard gives up, after 3 s
				}},
			} {
				t.Run(bad.name, func(t *testing.T) {
					before := g.rejected(t, bad.reason)
					bad.run()
					if !eventually(10*time.Second, 100*time.Millisecond, func() bool { return g.rejected(t, bad.reason) > before }) {
						t.Errorf("kafkaguard_frames_rejected_total{reason=%q} did not rise", bad.reason)
					}
					found := false
					for _, line := range strings.Split(g.log(), "\n") {
						if strings.Contains(line, `"reason":"`+bad.reason+`"`) && strings.Contains(line, bad.log) {
							found = true
						}
					}
					if !found {
						t.Errorf("no log line with reason %s and %q:\n%s", bad.reason, bad.log, g.logTail(20))
					}
				})
			}
		})
	}
}

// tlsSecurity is KG_CLIENT_SECURITY for the client programs through a TLS
// listener serving certs, with the client certificate when mtls.
func tlsSecurity(certs *tlstest.Certs, mtls bool) string {
	kv := []string{"security.protocol=SSL", "ssl.ca.location=" + certs.CAFile}
	if mtls {
		kv = append(kv, "ssl.certificate.location="+certs.ClientFiles.Cert, "ssl.key.location="+certs.ClientFiles.Key)
	}
	return strings.Join(kv, ";")
}

// TestKafka4TLSThroughGuard puts kafkaguard, serving TLS with its own test
// certificates, in front of the Kafka 4 cluster's SSL listeners, dialled
// with upstream_tls (the cluster's CA, its client certificate): franz-go,
// kcat, the Java client and confluent-kafka produce and consume through it
// over TLS and mTLS.
func TestKafka4TLSThroughGuard(t *testing.T) {
	requireKafka4(t)
	s := sharedSecureKafka4(t)
	certs := tlstest.New(t)
	g := startTLSGuard(t, s.addrs(s.ssl), tlsSides{
		listener: listenerTLS(certs, "request"),
		upstream: fmt.Sprintf("{ca_file: %s, cert_file: %s, key_file: %s}", filepath.Join(s.tls, "ca.crt"),
			filepath.Join(s.tls, "client.crt"), filepath.Join(s.tls, "client.key")),
	})
	run := fmt.Sprintf("h9-tls-%d", time.Now().UnixNano())
	mtls := certs.ClientConfig()
	mtls.Certificates = []tls.Certificate{certs.Client.TLS}
	t.Run("franz-go/tls", func(t *testing.T) { franzRoundTrip(t, g.addrs[0], run+"-franz-tls", certs.ClientConfig()) })
	t.Run("franz-go/mtls", func(t *testing.T) { franzRoundTrip(t, g.addrs[0], run+"-franz-mtls", mtls) })
	t.Run("kcat/tls", func(t *testing.T) { kcatRoundTrip(t, g.addrs[0], run+"-kcat-tls", kcatTLS(certs, nil)) })
	t.Run("kcat/mtls", func(t *testing.T) {
		kcatRoundTrip(t, g.addrs[0], run+"-kcat-mtls", kcatTLS(certs, &certs.ClientFiles))
	})
	for _, p := range []struct {
		program string
		mtls    bool
	}{{"java", true}, {"java", false}, {"confluent", true}, {"confluent", false}} {
		name := p.program + "/tls"
		if p.mtls {
			name = p.program + "/mtls"
		}
		t.Run(name, func(t *testing.T) { programThrough(t, s, g, p.program, tlsSecurity(certs, p.mtls), run) })
	}
	if !strings.Contains(g.log(), `"tls_subject":"CN=client,O=kafkaguard-test"`) {
		t.Errorf("no connection line names the client certificate's subject")
	}
	for _, r := range []string{"tls_handshake_failed", "plaintext_on_tls", "tls_handshake_timeout"} {
		if n := g.rejected(t, r); n != 0 {
			t.Errorf("%s = %v for real clients", r, n)
		}
	}
	if m, err := soakScrape(g.admin, "kafkaguard_upstream_dial_errors_total", ""); err != nil || m[""] != 0 {
		t.Errorf("upstream dial errors %v (%v): the TLS dial to the broker failed\n%s", m, err, g.logTail(20))
	}
}

// programThrough runs a client program of the Kafka 4 suite through g with
// security as its KG_CLIENT_SECURITY and checks its records came back.
func programThrough(t *testing.T, s secureKafka4, g *guard, program, security, run string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	topic := fmt.Sprintf("%s-%s-%d", run, program, time.Now().UnixNano()%1000000)
	args := []string{strings.Join(g.addrs, ","), topic, topic + "-group", fmt.Sprint(oversizeBytes)}
	cmd := clientProgram(ctx, t, s, program, args)
	cmd.Env = append(cmd.Environ(), "KG_CLIENT_SECURITY="+security)
	recs := genRecords(52, program, 40, 512, false)
	cmd.Stdin = bytes.NewReader(clientInput(recs, recs[:10], recs[:10], recs[:10]))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\nstdout tail:\n%s\nstderr tail:\n%s\nkafkaguard:\n%s", program, err, tail(out, 20), tail(stderr.Bytes(), 40), g.logTail(20))
	}
	r := parseReport(t, out)
	for _, e := range r.errors {
		t.Errorf("%s reported: %s", program, e)
	}
	sameRecords(t, program, recs, r.direct)
	t.Logf("%s (%s): %d records back over TLS through kafkaguard, oversized record: %s", program, r.version, len(r.direct), r.oversized)
}
