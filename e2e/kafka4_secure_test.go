package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// secureKafka4 is where the shared Kafka 4 cluster's secure listeners are
// (deploy/testing/kafka-4.sh): SSL on ssl+i, SASL_SSL on ssl+100+i,
// SASL_PLAINTEXT on ssl+200+i for node i+1, and the test PKI in tls.
type secureKafka4 struct {
	k   *kafka4
	ssl int
	tls string
}

// sharedSecureKafka4 is the shared cluster with its secure listeners: on
// 29500.. for the default cluster, else where KG_E2E_KAFKA4_SECURE_PORT (or
// the script's own KAFKA4_SECURE_PORT, which a cluster started here
// inherits) says.
func sharedSecureKafka4(t *testing.T) secureKafka4 {
	t.Helper()
	p := os.Getenv("KG_E2E_KAFKA4_SECURE_PORT")
	if p == "" {
		p = os.Getenv("KAFKA4_SECURE_PORT")
	}
	k := sharedKafka4(t)
	if p == "" && k.port == 29092 {
		p = "29500"
	}
	if p == "" {
		t.Skipf("the cluster on %d has no secure listeners unless KG_E2E_KAFKA4_SECURE_PORT is set", k.port)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("secure port %q: %v", p, err)
	}
	return secureKafka4{k: k, ssl: port, tls: filepath.Join(k.data, "tls")}
}

// addrs are the nodes' addresses on the listener at first port base.
func (s secureKafka4) addrs(base int) []string {
	out := make([]string, s.k.nodes)
	for i := range out {
		out[i] = "127.0.0.1:" + strconv.Itoa(base+i)
	}
	return out
}

func (s secureKafka4) tlsConfig(t *testing.T, clientCert bool) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(s.tls, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("no certificate in %s/ca.crt", s.tls)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if clientCert {
		c, err := tls.LoadX509KeyPair(filepath.Join(s.tls, "client.crt"), filepath.Join(s.tls, "client.key"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg
}

// secureCase is one way in: a listener, and the SASL mechanism if any.
type secureCase struct {
	name     string
	protocol string // security.protocol, as librdkafka and Java name it
	offset   int    // from the first SSL port
	mech     string // "" for SSL
	mtls     bool
}

var secureCases = []secureCase{
	{"ssl", "SSL", 0, "", false},
	{"mtls", "SSL", 0, "", true},
	{"sasl_ssl_plain", "SASL_SSL", 100, "PLAIN", false},
	{"sasl_ssl_scram512", "SASL_SSL", 100, "SCRAM-SHA-512", false},
	{"sasl_plaintext_plain", "SASL_PLAINTEXT", 200, "PLAIN", false},
	{"sasl_plaintext_scram256", "SASL_PLAINTEXT", 200, "SCRAM-SHA-256", false},
}

func saslMechanism(mech, user, pass string) sasl.Mechanism {
	switch mech {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
	}
	return nil
}

func (s secureKafka4) franzOpts(t *testing.T, c secureCase, pass string) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.addrs(s.ssl + c.offset)...),
		kgo.ClientID("kafkaguard-e2e-secure"),
		kgo.RequestTimeoutOverhead(10 * time.Second),
		kgo.RetryTimeout(30 * time.Second),
	}
	if strings.HasSuffix(c.protocol, "SSL") {
		opts = append(opts, kgo.DialTLSConfig(s.tlsConfig(t, c.mtls)))
	}
	if c.mech != "" {
		opts = append(opts, kgo.SASL(saslMechanism(c.mech, "alice", pass)))
	}
	return opts
}

// TestKafka4Secure proves the secure listeners of kafka-4.sh with real
// clients talking to the brokers directly (no kafkaguard yet): franz-go and
// kcat produce and consume over SSL (with and without a client
// certificate), SASL_SSL and SASL_PLAINTEXT with PLAIN and SCRAM, and a
// wrong password is refused.
func TestKafka4Secure(t *testing.T) {
	requireKafka4(t)
	s := sharedSecureKafka4(t)
	for _, c := range secureCases {
		t.Run(c.name, func(t *testing.T) {
			topic := fmt.Sprintf("secure-%s-%d", c.name, time.Now().UnixNano())
			t.Run("franz-go", func(t *testing.T) { franzSecure(t, s, c, topic) })
			t.Run("kcat", func(t *testing.T) { kcatSecure(t, s, c, topic+"-kcat") })
			if c.mech != "" {
				t.Run("wrong password", func(t *testing.T) { franzWrongPassword(t, s, c) })
			}
		})
	}
	// The client programs of the Kafka 4 suite, one secure way in each.
	byName := map[string]secureCase{}
	for _, c := range secureCases {
		byName[c.name] = c
	}
	for _, p := range []struct{ program, way string }{
		{"java", "sasl_ssl_scram512"},
		{"confluent", "sasl_plaintext_scram256"},
		{"kafka-python", "mtls"},
		{"kafkajs", "sasl_ssl_plain"},
	} {
		t.Run(p.program+"/"+p.way, func(t *testing.T) { programSecure(t, s, p.program, byName[p.way]) })
	}
}

// clientSecurity is KG_CLIENT_SECURITY for a way in: what the e2e client
// programs read to pick a secure listener.
func (s secureKafka4) clientSecurity(c secureCase) string {
	kv := []string{"security.protocol=" + c.protocol}
	if strings.HasSuffix(c.protocol, "SSL") {
		kv = append(kv, "ssl.ca.location="+filepath.Join(s.tls, "ca.crt"))
	}
	if c.mtls {
		kv = append(kv, "ssl.certificate.location="+filepath.Join(s.tls, "client.crt"),
			"ssl.key.location="+filepath.Join(s.tls, "client.key"))
	}
	if c.mech != "" {
		kv = append(kv, "sasl.mechanism="+c.mech, "sasl.username=alice", "sasl.password=alice-secret")
	}
	return strings.Join(kv, ";")
}

// clientProgram is the command that runs one client program of the Kafka 4 suite (java, confluent,
// kafka-python or kafkajs) with args (brokers, topic, group, oversize bytes), javac'ing the Java client
// first; its stdin, stdout and KG_CLIENT_SECURITY are the caller's to set.
func clientProgram(ctx context.Context, t *testing.T, s secureKafka4, program string, args []string) *exec.Cmd {
	t.Helper()
	var cmd *exec.Cmd
	switch program {
	case "java":
		cp := s.k.classpath(t)
		classes := t.TempDir()
		if out, err := exec.CommandContext(ctx, "javac", "-d", classes, "-cp", cp, filepath.Join("testdata", "Kafka4Client.java")).CombinedOutput(); err != nil {
			t.Fatalf("javac: %v\n%s", err, out)
		}
		cmd = exec.CommandContext(ctx, "java", append([]string{"-Xmx256m", "-cp", cp + ":" + classes, "Kafka4Client"}, args...)...)
	case "confluent", "kafka-python":
		cmd = exec.CommandContext(ctx, pythonVenv(t), append([]string{filepath.Join("testdata", "kafka4_python_client.py"), program}, args...)...)
	case "kafkajs":
		dir := filepath.Join("testdata", "kafkajs")
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "kafkajs")); err != nil {
			t.Fatalf("kafkajs not installed (cd e2e/testdata/kafkajs && npm ci): %v", err)
		}
		cmd = exec.CommandContext(ctx, "node", append([]string{filepath.Join(dir, "client.js")}, args...)...)
	}
	if cmd == nil {
		t.Fatalf("no client program %q", program)
	}
	return cmd
}

// programSecure runs one client program straight at a secure listener and
// checks that it read back what it wrote and reported no error. (Through
// kafkaguard, with the whole report checked, is the next step.)
func programSecure(t *testing.T, s secureKafka4, program string, c secureCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	topic := fmt.Sprintf("secure-%s-%d", program, time.Now().UnixNano())
	args := []string{strings.Join(s.addrs(s.ssl+c.offset), ","), topic, topic + "-group", strconv.Itoa(oversizeBytes)}
	cmd := clientProgram(ctx, t, s, program, args)
	cmd.Env = append(os.Environ(), "KG_CLIENT_SECURITY="+s.clientSecurity(c))
	recs := genRecords(51, program, 40, 512, false)
	cmd.Stdin = bytes.NewReader(clientInput(recs, recs[:10], recs[:10], recs[:10]))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s over %s: %v\nstdout tail:\n%s\nstderr tail:\n%s", program, c.name, err, tail(out, 20), tail(stderr.Bytes(), 40))
	}
	r := parseReport(t, out)
	for _, e := range r.errors {
		t.Errorf("%s over %s reported: %s", program, c.name, e)
	}
	sameRecords(t, program+" over "+c.name, recs, r.direct)
	t.Logf("%s (%s) over %s: %d records back, oversized record: %s", program, r.version, c.name, len(r.direct), r.oversized)
}

func franzSecure(t *testing.T, s secureKafka4, c secureCase, topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for i := range 50 {
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(c.name + " " + strconv.Itoa(i))})
	}
	franzProduceConsume(ctx, t, s.franzOpts(t, c, "alice-secret"), topic, recs, " over "+c.name)
}

func franzWrongPassword(t *testing.T, s secureKafka4, c secureCase) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(s.franzOpts(t, c, "wrong")...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	err = cl.Ping(ctx)
	if !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("wrong password over %s: %v, want SASL_AUTHENTICATION_FAILED", c.name, err)
	}
}

// librdkafkaVersion is the librdkafka kcat links, from `kcat -V`.
func librdkafkaVersion(t *testing.T) [3]int {
	t.Helper()
	out, err := exec.Command("kcat", "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat -V: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`librdkafka (\d+)\.(\d+)\.(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("kcat -V names no librdkafka version:\n%s", out)
	}
	var v [3]int
	for i := range v {
		v[i], _ = strconv.Atoi(string(m[i+1]))
	}
	return v
}

func kcatSecure(t *testing.T, s secureKafka4, c secureCase, topic string) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatalf("kcat not installed (apt-get install kcat): %v", err)
	}
	// librdkafka before 2.6.1 built SCRAM's client-final with the client
	// nonce twice; Kafka 4 compares nonces strictly (RFC 5802) and refuses
	// it (confluentinc/librdkafka#4895, edenhill/kcat#462).
	if v := librdkafkaVersion(t); strings.HasPrefix(c.mech, "SCRAM") && (v[0] < 2 || v[0] == 2 && (v[1] < 6 || v[1] == 6 && v[2] < 1)) {
		t.Skipf("kcat links librdkafka %d.%d.%d, whose SCRAM Kafka 4 refuses (fixed in 2.6.1)", v[0], v[1], v[2])
	}
	args := []string{"-b", strings.Join(s.addrs(s.ssl+c.offset), ","), "-X", "client.id=kafkaguard-e2e-kcat",
		"-X", "security.protocol=" + c.protocol}
	if strings.HasSuffix(c.protocol, "SSL") {
		args = append(args, "-X", "ssl.ca.location="+filepath.Join(s.tls, "ca.crt"))
	}
	if c.mtls {
		args = append(args, "-X", "ssl.certificate.location="+filepath.Join(s.tls, "client.crt"),
			"-X", "ssl.key.location="+filepath.Join(s.tls, "client.key"))
	}
	if c.mech != "" {
		args = append(args, "-X", "sasl.mechanisms="+c.mech, "-X", "sasl.username=alice", "-X", "sasl.password=alice-secret")
	}
	kcatProduceConsume(t, args, topic, c.name, " over "+c.name)
}
