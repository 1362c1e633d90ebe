package tlstest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"testing"
	"time"
)

// The files are what each client reads: the pairs load with crypto/tls,
// the .pem holds an unencrypted PKCS#8 key then the certificate (Java's
// ssl.keystore.type=PEM), and the certificates verify as the doc says.
func TestCerts(t *testing.T) {
	c := New(t)
	for _, f := range []Files{c.ServerFiles, c.ClientFiles, c.ExpiredFiles, c.UnknownFiles} {
		if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
			t.Errorf("%s: %v", f.Cert, err)
		}
		data, err := os.ReadFile(f.PEM)
		if err != nil {
			t.Fatal(err)
		}
		key, rest := pem.Decode(data)
		cert, _ := pem.Decode(rest)
		if key == nil || key.Type != "PRIVATE KEY" || cert == nil || cert.Type != "CERTIFICATE" {
			t.Errorf("%s: want a PRIVATE KEY block then a CERTIFICATE block", f.PEM)
		} else if _, err := x509.ParsePKCS8PrivateKey(key.Bytes); err != nil {
			t.Errorf("%s: key is not PKCS#8: %v", f.PEM, err)
		}
	}
	verify := func(l *Leaf, roots *CA, name string, usage x509.ExtKeyUsage) error {
		_, err := l.Cert.Verify(x509.VerifyOptions{Roots: roots.Pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := verify(c.Server, c.CA, name, x509.ExtKeyUsageServerAuth); err != nil {
			t.Errorf("server for %s: %v", name, err)
		}
	}
	if err := verify(c.Client, c.CA, "", x509.ExtKeyUsageClientAuth); err != nil {
		t.Errorf("client: %v", err)
	}
	if err := verify(c.Unknown, c.CA, "localhost", x509.ExtKeyUsageServerAuth); err == nil {
		t.Error("unknown verifies against CA")
	}
	if err := verify(c.Expired, c.CA, "localhost", x509.ExtKeyUsageServerAuth); err == nil || !time.Now().After(c.Expired.Cert.NotAfter) {
		t.Errorf("expired: %v, not after %s", err, c.Expired.Cert.NotAfter)
	}
}
