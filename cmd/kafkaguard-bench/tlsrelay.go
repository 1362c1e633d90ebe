package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// --tls measures what terminating TLS costs kafkaguard against what it
// costs any proxy: clients speak TLS to kafkaguard (B) and to a minimal
// TLS-terminating relay (C: crypto/tls and io.Copy, no parsing), both
// speaking plaintext to the broker, both with the same certificate and the
// same TLS version and cipher suite (whatever crypto/tls negotiates with
// franz-go: TLS 1.3, AES-128-GCM on CPUs with AES instructions). A direct
// stays plaintext, as the broker is.

// Child settings of the TLS relay.
const (
	modeTLSRelay = "tlsrelay"
	childCertEnv = "KAFKAGUARD_BENCH_CERT"
	childKeyEnv  = "KAFKAGUARD_BENCH_KEY"
)

// benchTLS is the certificate both TLS paths serve and the config clients
// trust it with.
type benchTLS struct {
	certFile, keyFile string
	client            *tls.Config
}

// newBenchTLS writes a self-signed ECDSA P-256 certificate for 127.0.0.1,
// valid for a day, into dir.
func newBenchTLS(dir string) (*benchTLS, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "kafkaguard-bench"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	t := &benchTLS{certFile: filepath.Join(dir, "bench-tls.crt"), keyFile: filepath.Join(dir, "bench-tls.key")}
	if err := os.WriteFile(t.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(t.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	t.client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return t, nil
}

// guardSection is the listener's tls section in kafkaguard's config.
func (t *benchTLS) guardSection() string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("\n    tls: {cert_file: %s, key_file: %s}", t.certFile, t.keyFile)
}

// childEnv is what the TLS relay child reads its certificate from.
func (t *benchTLS) childEnv() []string {
	return []string{childCertEnv + "=" + t.certFile, childKeyEnv + "=" + t.keyFile}
}

// startTLSRelay runs the TLS-terminating relay: each accepted connection's
// handshake (10 s at most), then a fresh upstream connection joined to it
// with io.Copy both ways. The floor for any proxy that must read what TLS
// carries.
func startTLSRelay(upstream string) (string, func(), error) {
	pair, err := tls.LoadX509KeyPair(os.Getenv(childCertEnv), os.Getenv(childKeyEnv))
	if err != nil {
		return "", nil, fmt.Errorf("tls relay: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go acceptLoop(ln, func(c net.Conn) { tlsRelayConn(c, cfg, upstream) })
	return ln.Addr().String(), func() { ln.Close() }, nil
}

func tlsRelayConn(raw net.Conn, cfg *tls.Config, upstream string) {
	defer raw.Close()
	c := tls.Server(raw, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := c.HandshakeContext(ctx)
	cancel()
	if err != nil {
		return
	}
	up, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	pipeBoth(c, up)
}

// dialTLS is the relay paths' dialer under --tls: every broker through
// seed, with a TLS client handshake.
func dialTLS(ctx context.Context, d *net.Dialer, network, seed string, cfg *tls.Config) (net.Conn, error) {
	c, err := d.DialContext(ctx, network, seed)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}
