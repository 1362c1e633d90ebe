package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// tlsEcho is a TLS listener on 127.0.0.1:0 that runs handshakeServer on
// each connection, reports the outcome, then writes the client's verified
// subject and a newline and echoes what it reads.
type tlsEcho struct {
	ln      net.Listener
	results chan handshakeResult
	wg      sync.WaitGroup
}

type handshakeResult struct {
	reason reason
	err    error
}

func newTLSEcho(t *testing.T, cfg *tls.Config, timeout time.Duration) *tlsEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &tlsEcho{ln: ln, results: make(chan handshakeResult, 64)}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[raw] = true
			mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer raw.Close()
				tc, reason, err := handshakeServer(raw, cfg, timeout)
				select {
				case e.results <- handshakeResult{reason, err}:
				default: // a test that does not read results must not block the server
				}
				if err != nil {
					return
				}
				if _, err := io.WriteString(tc, PeerSubject(tc.ConnectionState())+"\n"); err != nil {
					return
				}
				io.Copy(tc, tc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func (e *tlsEcho) addr() string { return e.ln.Addr().String() }

// result waits for the server's view of the next handshake.
func (e *tlsEcho) result(t *testing.T) handshakeResult {
	t.Helper()
	select {
	case r := <-e.results:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no handshake result within 5s")
		return handshakeResult{}
	}
}

// servedName is the common name of the certificate a TLS server at addr serves cfg's client now; a
// failed handshake fails the test.
func servedName(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, _, err := dialTLS(addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// dialTLS handshakes with the echo server and reads the subject line it
// sends, which in TLS 1.3 is where a client learns that the server refused
// its certificate.
func dialTLS(addr string, cfg *tls.Config) (*tls.Conn, string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, "", err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", err
	}
	c.SetDeadline(time.Time{})
	return c, strings.TrimSuffix(line, "\n"), nil
}

func TestTLSHandshakeVersionsAndClientAuth(t *testing.T) {
	certs := tlstest.New(t)
	client := func(max uint16, cert *tlstest.Leaf) *tls.Config {
		c := certs.ClientConfig()
		c.MaxVersion = max
		if cert != nil {
			// Sent whatever CAs the server names, as a misconfigured or
			// hostile client would (Go's client would otherwise send none).
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
		}
		return c
	}
	tests := []struct {
		name        string
		auth        tls.ClientAuthType
		min         uint16
		client      *tls.Config
		wantVersion uint16 // 0: the handshake fails
		wantSubject string
	}{
		{"tls 1.2", tls.NoClientCert, 0, client(tls.VersionTLS12, nil), tls.VersionTLS12, ""},
		{"tls 1.3", tls.NoClientCert, 0, client(0, nil), tls.VersionTLS13, ""},
		{"client cert ignored when not asked", tls.NoClientCert, 0, client(0, certs.Client), tls.VersionTLS13, ""},
		{"request expired cert", tls.VerifyClientCertIfGiven, 0, client(tls.VersionTLS12, certs.Expired), 0, ""},
		{"require good cert", tls.RequireAndVerifyClientCert, 0, client(0, certs.Client), tls.VersionTLS13, "CN=client,O=kafkaguard-test"},
		{"require good cert tls 1.2", tls.RequireAndVerifyClientCert, 0, client(tls.VersionTLS12, certs.Client), tls.VersionTLS12, "CN=client,O=kafkaguard-test"},
		{"require no cert", tls.RequireAndVerifyClientCert, 0, client(0, nil), 0, ""},
		{"require unknown ca", tls.RequireAndVerifyClientCert, 0, client(0, certs.Unknown), 0, ""},
		{"require expired cert", tls.RequireAndVerifyClientCert, 0, client(0, certs.Expired), 0, ""},
		{"request no cert", tls.VerifyClientCertIfGiven, 0, client(0, nil), tls.VersionTLS13, ""},
		{"request good cert", tls.VerifyClientCertIfGiven, 0, client(0, certs.Client), tls.VersionTLS13, "CN=client,O=kafkaguard-test"},
		{"request unknown ca", tls.VerifyClientCertIfGiven, 0, client(0, certs.Unknown), 0, ""},
		{"min 1.3 refuses 1.2", tls.NoClientCert, tls.VersionTLS13, client(tls.VersionTLS12, nil), 0, ""},
		{"min 1.3 serves 1.3", tls.NoClientCert, tls.VersionTLS13, client(0, nil), tls.VersionTLS13, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := ServerTLSFiles{CertFile: certs.ServerFiles.Cert, KeyFile: certs.ServerFiles.Key, ClientAuth: tt.auth, MinVersion: tt.min}
			if tt.auth != tls.NoClientCert {
				files.ClientCAFile = certs.CAFile
			}
			src, err := NewServerTLS(files, TLSFileOptions{Listener: "test", Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			e := newTLSEcho(t, src.ServerConfig(), 5*time.Second)
			c, subject, err := dialTLS(e.addr(), tt.client)
			r := e.result(t)
			if tt.wantVersion == 0 {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded, want it refused")
				}
				if r.reason != reasonTLSHandshakeFailed || !errors.Is(r.err, errTLSHandshakeFailed) {
					t.Errorf("server reason %q (%v), want %s", r.reason, r.err, reasonTLSHandshakeFailed)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v (server: %s %v)", err, r.reason, r.err)
			}
			defer c.Close()
			if r.err != nil {
				t.Fatalf("server: %s %v", r.reason, r.err)
			}
			if v := c.ConnectionState().Version; v != tt.wantVersion {
				t.Errorf("version %x, want %x", v, tt.wantVersion)
			}
			if subject != tt.wantSubject {
				t.Errorf("server saw subject %q, want %q", subject, tt.wantSubject)
			}
		})
	}
}

// What a client sends instead of a ClientHello names the reason.
func TestTLSHandshakeReasons(t *testing.T) {
	certs := tlstest.New(t)
	src, err := NewServerTLS(ServerTLSFiles{CertFile: certs.ServerFiles.Cert, KeyFile: certs.ServerFiles.Key}, TLSFileOptions{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	e := newTLSEcho(t, src.ServerConfig(), 300*time.Millisecond)
	apiVersions := kmsg.NewPtrApiVersionsRequest()
	apiVersions.Version = 3
	apiVersions.ClientSoftwareName, apiVersions.ClientSoftwareVersion = "kgo", "1.0"
	hello := clientHello(t)
	tests := []struct {
		name    string
		send    []byte // nil: send nothing and wait; empty: close at once
		then    string // after send: "" wait, "close", or "reset"
		reason  reason
		wantErr error
		wantMsg string
	}{
		{"plaintext ApiVersions", rawRequest(18, 3, 1, "plain-client", apiVersions.AppendTo(nil)), "", reasonPlaintextOnTLS, errPlaintextOnTLS, "Kafka ApiVersions request"},
		{"plaintext Metadata", rawRequest(3, 12, 1, "c", []byte{0, 0, 0, 0}), "", reasonPlaintextOnTLS, errPlaintextOnTLS, "Kafka Metadata request"},
		{"http", []byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), "", reasonNotKafka, errNotKafka, "HTTP"},
		{"garbage", bytes.Repeat([]byte{0xee}, 64), "", reasonTLSHandshakeFailed, errTLSHandshakeFailed, ""},
		{"silent", nil, "", reasonTLSHandshakeTimeout, errTLSHandshakeTimeout, "timed out"},
		{"closed at once", []byte{}, "", reasonClientClosed, errClosedBeforeHandshake, ""},
		{"reset at once", []byte{}, "reset", reasonClientClosed, errClosedBeforeHandshake, ""},
		{"client hello, then closed", hello, "close", reasonTLSAbandoned, errClosedMidHandshake, ""},
		{"half a client hello, then closed", hello[:len(hello)/2], "close", reasonTLSAbandoned, errClosedMidHandshake, "unexpected EOF"},
		{"client hello, then reset", hello, "reset", reasonTLSAbandoned, errClosedMidHandshake, ""},
		{"half a client hello, then silent", hello[:len(hello)/2], "", reasonTLSHandshakeTimeout, errTLSHandshakeTimeout, "timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", e.addr(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			switch {
			case tt.send == nil:
			case len(tt.send) == 0 && tt.then == "":
				c.Close()
			case len(tt.send) == 0:
			default:
				if _, err := c.Write(tt.send); err != nil {
					t.Fatal(err)
				}
			}
			switch tt.then {
			case "close":
				c.Close()
			case "reset":
				c.(*net.TCPConn).SetLinger(0) // close sends a RST
				c.Close()
			}
			r := e.result(t)
			if r.reason != tt.reason || !errors.Is(r.err, tt.wantErr) || !strings.Contains(r.err.Error(), tt.wantMsg) {
				t.Errorf("reason %q, err %v; want %q, %v containing %q", r.reason, r.err, tt.reason, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

// clientHello returns the first TLS record a crypto/tls client sends: its
// ClientHello.
func clientHello(t *testing.T) []byte {
	t.Helper()
	cl, srv := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(cl, &tls.Config{ServerName: "kafkaguard.test", InsecureSkipVerify: true}).Handshake()
	}()
	defer func() {
		cl.Close() // the client's handshake fails and returns
		srv.Close()
		<-done
	}()
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(srv, hdr); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	if _, err := io.ReadFull(srv, rec[5:]); err != nil {
		t.Fatal(err)
	}
	if rec[0] != tlsHandshakeRecord {
		t.Fatalf("first record % x is no handshake", rec[:5])
	}
	return rec
}

func TestLooksLikeKafkaRequest(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"ApiVersions v3", rawRequest(18, 3, 7, "c", nil), true},
		{"Produce v9", rawRequest(0, 9, 7, "c", nil), true},
		{"short", rawRequest(18, 3, 7, "c", nil)[:7], false},
		{"tls client hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}, false},
		{"unknown api key", rawRequest(9999, 0, 7, "c", nil), false},
		{"version beyond kmsg", rawRequest(18, 999, 7, "c", nil), false},
		{"negative version", rawRequest(18, -1, 7, "c", nil), false},
		{"size too small", []byte{0, 0, 0, 2, 0, 18, 0, 3}, false},
		{"http", []byte("POST / HTTP/1.1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := looksLikeKafkaRequest(tt.b); got != tt.want {
				t.Errorf("looksLikeKafkaRequest(% x) = %v, want %v", tt.b, got, tt.want)
			}
		})
	}
}

// k8sDir lays certificate files out as a Kubernetes Secret volume does:
// dir/tls.crt -> ..data/tls.crt, ..data -> ..<version>/, swapped atomically.
type k8sDir struct {
	t   *testing.T
	dir string
	n   int
}

func newK8sDir(t *testing.T, leaf *tlstest.Leaf) *k8sDir {
	d := &k8sDir{t: t, dir: t.TempDir()}
	d.publish(leaf.CertPEM, leaf.KeyPEM)
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(d.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// publish writes a new version directory and swaps ..data to it with a
// rename, as kubelet's atomic writer does.
func (d *k8sDir) publish(cert, key []byte) {
	d.n++
	version := filepath.Join(d.dir, "..v"+string(rune('0'+d.n)))
	if err := os.Mkdir(version, 0o700); err != nil {
		d.t.Fatal(err)
	}
	tlstest.WriteFile(d.t, filepath.Join(version, "tls.crt"), cert)
	tlstest.WriteFile(d.t, filepath.Join(version, "tls.key"), key)
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(version), tmp); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		d.t.Fatal(err)
	}
}

func (d *k8sDir) cert() string { return filepath.Join(d.dir, "tls.crt") }
func (d *k8sDir) key() string  { return filepath.Join(d.dir, "tls.key") }

// lockedBuffer is a log sink the handshake goroutines and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// expiryGauge reads the expiry gauge for one listener and role; -1 if absent.
func expiryGauge(t *testing.T, reg *prometheus.Registry, listener, role string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kafkaguard_tls_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsMatch(m, map[string]string{"listener": listener, "role": role}) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func unixSeconds(c *x509.Certificate) float64 { return float64(c.NotAfter.UnixNano()) / 1e9 }

// Rotating the files, by an in-place rewrite or by a Kubernetes symlink
// swap, changes the certificate new handshakes get and the expiry gauge,
// while a connection made before keeps working; a bad new file keeps the old
// certificate and is logged with its path.
func TestTLSCertRotation(t *testing.T) {
	certs := tlstest.New(t)
	layouts := []struct {
		name    string
		setup   func(t *testing.T, first *tlstest.Leaf) (certFile, keyFile string, publish func(cert, key []byte))
		inplace bool
	}{
		{"kubernetes symlink swap", func(t *testing.T, first *tlstest.Leaf) (string, string, func(cert, key []byte)) {
			d := newK8sDir(t, first)
			return d.cert(), d.key(), d.publish
		}, false},
		{"in-place rewrite", func(t *testing.T, first *tlstest.Leaf) (string, string, func(cert, key []byte)) {
			f := first.WriteFiles(t, t.TempDir(), "tls")
			return f.Cert, f.Key, func(cert, key []byte) {
				// Key first, then certificate: a reader in between sees a
				// mismatched pair, which must keep the old one, not fail.
				tlstest.WriteFile(t, f.Key, key)
				tlstest.WriteFile(t, f.Cert, cert)
			}
		}, true},
	}
	for _, lt := range layouts {
		t.Run(lt.name, func(t *testing.T) {
			first := certs.CA.Issue(t, tlstest.Server("first"))
			second := certs.CA.Issue(t, tlstest.Spec{CommonName: "second", IPs: first.Cert.IPAddresses, NotAfter: first.Cert.NotAfter.Add(time.Hour)})
			certFile, keyFile, publish := lt.setup(t, first)
			reg := prometheus.NewRegistry()
			logs := &lockedBuffer{}
			src, err := NewServerTLS(ServerTLSFiles{CertFile: certFile, KeyFile: keyFile, ClientCAFile: certs.CAFile, ClientAuth: tls.VerifyClientCertIfGiven},
				TLSFileOptions{Listener: "127.0.0.1:9093", CheckEvery: 20 * time.Millisecond, Logger: zerolog.New(logs), Metrics: NewTLSMetrics(reg)})
			if err != nil {
				t.Fatal(err)
			}
			e := newTLSEcho(t, src.ServerConfig(), 5*time.Second)
			served := func() string { return servedName(t, e.addr(), certs.ClientConfig()) }
			if got := served(); got != "first" {
				t.Fatalf("served %q, want first", got)
			}
			if got, want := expiryGauge(t, reg, "127.0.0.1:9093", roleServer), unixSeconds(first.Cert); got != want {
				t.Errorf("server expiry gauge %v, want %v", got, want)
			}
			if got, want := expiryGauge(t, reg, "127.0.0.1:9093", roleClientCA), unixSeconds(certs.CA.Cert); got != want {
				t.Errorf("client_ca expiry gauge %v, want %v", got, want)
			}
			old, _, err := dialTLS(e.addr(), certs.ClientConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()

			// A certificate without its key: kept the old one, logged with the path.
			publish(second.CertPEM, []byte("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"))
			waitFor(t, 5*time.Second, "the bad files logged", func() bool {
				served()
				return strings.Contains(logs.String(), "do not load")
			})
			if got := served(); got != "first" {
				t.Errorf("after a bad key, served %q, want first still", got)
			}
			if l := logs.String(); !strings.Contains(l, certFile) || strings.Contains(l, "bm90IGEga2V5") {
				t.Errorf("log should name %s and never quote the key:\n%s", certFile, l)
			}

			publish(second.CertPEM, second.KeyPEM)
			waitFor(t, 5*time.Second, "the second certificate served", func() bool { return served() == "second" })
			if got, want := expiryGauge(t, reg, "127.0.0.1:9093", roleServer), unixSeconds(second.Cert); got != want {
				t.Errorf("server expiry gauge %v after rotation, want %v", got, want)
			}
			// The connection made before the rotation still works.
			old.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := old.Write([]byte("ping\n")); err != nil {
				t.Fatalf("old connection write: %v", err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(old, buf); err != nil || string(buf) != "ping\n" {
				t.Fatalf("old connection echo %q, %v", buf, err)
			}
			if got := old.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "first" {
				t.Errorf("old connection's certificate %q, want first", got)
			}
		})
	}
}

// The gauge follows a rotation on a listener nobody connects to: a scrape
// runs the check.
func TestTLSCertExpiryGaugeFollowsWithoutHandshakes(t *testing.T) {
	certs := tlstest.New(t)
	d := newK8sDir(t, certs.Server)
	reg := prometheus.NewRegistry()
	_, err := NewServerTLS(ServerTLSFiles{CertFile: d.cert(), KeyFile: d.key()},
		TLSFileOptions{Listener: "l", CheckEvery: 10 * time.Millisecond, Logger: zerolog.Nop(), Metrics: NewTLSMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	next := certs.CA.Issue(t, tlstest.Spec{CommonName: "next", NotAfter: time.Now().Add(48 * time.Hour)})
	d.publish(next.CertPEM, next.KeyPEM)
	waitFor(t, 5*time.Second, "the gauge to show the new expiry", func() bool {
		return expiryGauge(t, reg, "l", roleServer) == unixSeconds(next.Cert)
	})
}

func TestTLSUpstream(t *testing.T) {
	certs := tlstest.New(t)
	broker := certs.ServerConfig()
	broker.ClientAuth = tls.RequireAndVerifyClientCert
	e := newTLSEcho(t, broker, 5*time.Second)
	reg := prometheus.NewRegistry()
	m := NewTLSMetrics(reg)
	tests := []struct {
		name   string
		files  UpstreamTLSFiles
		wantOK bool
	}{
		{"ca and client cert", UpstreamTLSFiles{CAFile: certs.CAFile, ServerName: "127.0.0.1", CertFile: certs.ClientFiles.Cert, KeyFile: certs.ClientFiles.Key}, true},
		{"localhost name", UpstreamTLSFiles{CAFile: certs.CAFile, ServerName: "localhost", CertFile: certs.ClientFiles.Cert, KeyFile: certs.ClientFiles.Key}, true},
		{"no client cert", UpstreamTLSFiles{CAFile: certs.CAFile, ServerName: "127.0.0.1"}, false},
		{"wrong ca", UpstreamTLSFiles{CAFile: certs.UnknownCAFile, ServerName: "127.0.0.1", CertFile: certs.ClientFiles.Cert, KeyFile: certs.ClientFiles.Key}, false},
		{"name not in certificate", UpstreamTLSFiles{CAFile: certs.CAFile, ServerName: "kafka-0.kafka-headless", CertFile: certs.ClientFiles.Cert, KeyFile: certs.ClientFiles.Key}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := NewUpstreamTLS(tt.files, TLSFileOptions{Listener: "up", Logger: zerolog.Nop(), Metrics: m})
			if err != nil {
				t.Fatal(err)
			}
			cfg := src.Config()
			if cfg.Renegotiation != tls.RenegotiateNever || cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify {
				t.Fatalf("unsafe upstream config: %+v", cfg)
			}
			c, subject, err := dialTLS(e.addr(), cfg)
			r := e.result(t)
			if !tt.wantOK {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded, want it refused")
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v (broker: %v)", err, r.err)
			}
			c.Close()
			if subject != "CN=client,O=kafkaguard-test" {
				t.Errorf("broker saw subject %q", subject)
			}
		})
	}
	if got, want := expiryGauge(t, reg, "up", roleUpstreamClient), unixSeconds(certs.Client.Cert); got != want {
		t.Errorf("upstream_client gauge %v, want %v", got, want)
	}
	if got := expiryGauge(t, reg, "up", roleUpstreamCA); got <= 0 {
		t.Errorf("upstream_ca gauge %v, want a time", got)
	}
}

func TestTLSFilesRefused(t *testing.T) {
	certs := tlstest.New(t)
	missing := filepath.Join(certs.Dir, "absent.crt")
	for name, f := range map[string]ServerTLSFiles{
		"missing cert":           {CertFile: missing, KeyFile: certs.ServerFiles.Key},
		"mismatched key":         {CertFile: certs.ServerFiles.Cert, KeyFile: certs.ClientFiles.Key},
		"client ca not pem":      {CertFile: certs.ServerFiles.Cert, KeyFile: certs.ServerFiles.Key, ClientCAFile: certs.ServerFiles.Key, ClientAuth: tls.RequireAndVerifyClientCert},
		"unverified client auth": {CertFile: certs.ServerFiles.Cert, KeyFile: certs.ServerFiles.Key, ClientCAFile: certs.CAFile, ClientAuth: tls.RequestClientCert},
		"require without ca":     {CertFile: certs.ServerFiles.Cert, KeyFile: certs.ServerFiles.Key, ClientAuth: tls.RequireAndVerifyClientCert},
		"tls 1.1":                {CertFile: certs.ServerFiles.Cert, KeyFile: certs.ServerFiles.Key, MinVersion: tls.VersionTLS11},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewServerTLS(f, TLSFileOptions{Logger: zerolog.Nop()}); err == nil {
				t.Fatal("accepted")
			} else if strings.Contains(err.Error(), "BEGIN") {
				t.Errorf("error quotes PEM: %v", err)
			}
		})
	}
	if _, err := NewUpstreamTLS(UpstreamTLSFiles{ServerName: "k", CertFile: certs.ClientFiles.Cert}, TLSFileOptions{}); err == nil {
		t.Error("upstream cert without key accepted")
	}
	if _, err := NewUpstreamTLS(UpstreamTLSFiles{CAFile: certs.CAFile}, TLSFileOptions{}); err == nil {
		t.Error("upstream without server name accepted")
	}
}

func TestPeerSubject(t *testing.T) {
	certs := tlstest.New(t)
	long := certs.CA.Issue(t, tlstest.Spec{CommonName: strings.Repeat("x", 300)})
	tests := []struct {
		name string
		cs   tls.ConnectionState
		want string
	}{
		{"none", tls.ConnectionState{}, ""},
		{"unverified", tls.ConnectionState{PeerCertificates: []*x509.Certificate{certs.Client.Cert}}, ""},
		{"verified", tls.ConnectionState{PeerCertificates: []*x509.Certificate{certs.Client.Cert}, VerifiedChains: [][]*x509.Certificate{{certs.Client.Cert, certs.CA.Cert}}}, "CN=client,O=kafkaguard-test"},
		{"long", tls.ConnectionState{PeerCertificates: []*x509.Certificate{long.Cert}, VerifiedChains: [][]*x509.Certificate{{long.Cert}}}, "CN=" + strings.Repeat("x", maxSubjectLen-3) + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PeerSubject(tt.cs); got != tt.want {
				t.Errorf("PeerSubject = %q, want %q", got, tt.want)
			}
		})
	}
}

// A symlink swap to a file of the same size and mtime still counts as a
// change: kubelet may write a Secret's new version within the same second,
// and a renewed certificate is often exactly as long as the old one.
func TestTLSFileStampSeesSymlinkSwapOfLookalike(t *testing.T) {
	dir := t.TempDir()
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	for _, v := range []string{"a", "b"} {
		p := filepath.Join(dir, v)
		tlstest.WriteFile(t, p, []byte("same size "+v))
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "tls.crt")
	if err := os.Symlink("a", link); err != nil {
		t.Fatal(err)
	}
	stamp := func() fileStamp {
		fi, err := os.Stat(link)
		if err != nil {
			t.Fatal(err)
		}
		return stampOf(fi)
	}
	before := stamp()
	if err := os.Symlink("b", link+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+".tmp", link); err != nil {
		t.Fatal(err)
	}
	if after := stamp(); after == before {
		t.Errorf("stamp unchanged by the swap: %+v", after)
	}
}

// Whatever a client sends before or instead of a ClientHello, classifying
// the failure never panics and always names a reason.
func FuzzClassifyHandshake(f *testing.F) {
	f.Add(rawRequest(18, 3, 1, "c", nil))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05})
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > sniffLen {
			b = b[:sniffLen]
		}
		if reason, err := classifyHandshake(errors.New("x"), b); reason == reasonNone || err == nil {
			t.Fatalf("no reason for % x", b)
		}
	})
}

// The per-handshake cost of keeping the files current: an atomic load when
// no check is due, one stat per file when it is.
func BenchmarkTLSFilesConfig(b *testing.B) {
	certs := tlstest.New(b)
	for _, every := range []time.Duration{time.Hour, time.Nanosecond} {
		src, err := NewServerTLS(ServerTLSFiles{CertFile: certs.ServerFiles.Cert, KeyFile: certs.ServerFiles.Key, ClientCAFile: certs.CAFile, ClientAuth: tls.VerifyClientCertIfGiven},
			TLSFileOptions{CheckEvery: every, Logger: zerolog.Nop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("check_every="+every.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if src.Config() == nil {
					b.Fatal("nil config")
				}
			}
		})
	}
}
