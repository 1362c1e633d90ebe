package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// validity is how long the leaf certificates Issue makes are valid: long
// enough for any test, short enough that nobody mistakes them for real ones.
// CAs last caValidity, beyond the 7 days within which kafkaguard warns of an
// expiry, so a warning in a test is always about the certificate it made.
const (
	validity   = 24 * time.Hour
	caValidity = 30 * 24 * time.Hour
)

// CA is a certificate authority that signs test certificates.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	// Pool holds Cert alone, for tls.Config's RootCAs or ClientCAs.
	Pool *x509.CertPool
}

// Leaf is a certificate issued by a CA, with its key.
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte
	// KeyPEM is the key in unencrypted PKCS#8 ("BEGIN PRIVATE KEY").
	KeyPEM []byte
	// TLS is the pair ready for tls.Config.Certificates.
	TLS tls.Certificate
}

// Spec says what Issue puts in a certificate. Zero times mean valid from a
// minute ago for a day.
type Spec struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	NotBefore  time.Time
	NotAfter   time.Time
}

// Server is the Spec of a server certificate for the loopback names every
// test dials: 127.0.0.1, ::1 and localhost.
func Server(cn string) Spec {
	return Spec{CommonName: cn, DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
}

// NewCA makes a self-signed CA named cn.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"kafkaguard-test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("tlstest: create CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("tlstest: parse CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, CertPEM: pemBlock("CERTIFICATE", der), Pool: pool}
}

// Issue signs a certificate for s, usable both as a server and as a client
// certificate (Kafka brokers and clients alike accept that).
func (ca *CA) Issue(t testing.TB, s Spec) *Leaf {
	t.Helper()
	if s.NotBefore.IsZero() {
		s.NotBefore = time.Now().Add(-time.Minute)
	}
	if s.NotAfter.IsZero() {
		s.NotAfter = time.Now().Add(validity)
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: s.CommonName, Organization: []string{"kafkaguard-test"}},
		DNSNames:     s.DNSNames,
		IPAddresses:  s.IPs,
		NotBefore:    s.NotBefore,
		NotAfter:     s.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("tlstest: issue %s: %v", s.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("tlstest: parse %s: %v", s.CommonName, err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("tlstest: marshal key: %v", err)
	}
	certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", pkcs8)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("tlstest: key pair: %v", err)
	}
	return &Leaf{Cert: cert, CertPEM: certPEM, KeyPEM: keyPEM, TLS: pair}
}

// Files are where WriteFiles put a Leaf.
type Files struct {
	Cert string // NAME.crt: the certificate
	Key  string // NAME.key: its key
	PEM  string // NAME.pem: key then certificate, for Java's ssl.keystore.type=PEM
}

// WriteFiles writes l into dir as name.crt, name.key and name.pem (mode
// 0600), replacing files of those names.
func (l *Leaf) WriteFiles(t testing.TB, dir, name string) Files {
	t.Helper()
	f := Files{
		Cert: filepath.Join(dir, name+".crt"),
		Key:  filepath.Join(dir, name+".key"),
		PEM:  filepath.Join(dir, name+".pem"),
	}
	WriteFile(t, f.Cert, l.CertPEM)
	WriteFile(t, f.Key, l.KeyPEM)
	WriteFile(t, f.PEM, append(append([]byte{}, l.KeyPEM...), l.CertPEM...))
	return f
}

// WriteFile writes data to path with mode 0600, failing the test on error.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("tlstest: %v", err)
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("tlstest: generate key: %v", err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("tlstest: serial: %v", err)
	}
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
