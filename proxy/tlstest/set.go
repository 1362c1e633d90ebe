package tlstest

import (
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"
)

// Certs is the set of certificates and files New makes for one test.
type Certs struct {
	// Dir is the t.TempDir() every file is in.
	Dir string
	// CA signs Server, Client and Expired; UnknownCA signs Unknown and is
	// trusted by nobody.
	CA, UnknownCA *CA
	// Server is for the loopback names (see Server); Client has the subject
	// "CN=client,O=kafkaguard-test"; Expired is like Server but expired an
	// hour ago; Unknown is like Server but signed by UnknownCA.
	Server, Client, Expired, Unknown *Leaf

	// CAFile is CA's certificate; UnknownCAFile UnknownCA's.
	CAFile, UnknownCAFile string
	// The files of each leaf: server.*, client.*, expired.*, unknown.*.
	ServerFiles, ClientFiles, ExpiredFiles, UnknownFiles Files
}

// New makes a fresh Certs in a t.TempDir().
func New(t testing.TB) *Certs {
	t.Helper()
	dir := t.TempDir()
	c := &Certs{Dir: dir, CA: NewCA(t, "kafkaguard-test-ca"), UnknownCA: NewCA(t, "unknown-ca")}
	c.Server = c.CA.Issue(t, Server("server"))
	c.Client = c.CA.Issue(t, Spec{CommonName: "client"})
	expired := Server("expired")
	expired.NotBefore, expired.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	c.Expired = c.CA.Issue(t, expired)
	c.Unknown = c.UnknownCA.Issue(t, Server("unknown"))

	c.CAFile = filepath.Join(dir, "ca.crt")
	WriteFile(t, c.CAFile, c.CA.CertPEM)
	c.UnknownCAFile = filepath.Join(dir, "unknown-ca.crt")
	WriteFile(t, c.UnknownCAFile, c.UnknownCA.CertPEM)
	c.ServerFiles = c.Server.WriteFiles(t, dir, "server")
	c.ClientFiles = c.Client.WriteFiles(t, dir, "client")
	c.ExpiredFiles = c.Expired.WriteFiles(t, dir, "expired")
	c.UnknownFiles = c.Unknown.WriteFiles(t, dir, "unknown")
	return c
}

// ServerConfig serves Server and verifies client certificates against CA
// when a client sends one.
func (c *Certs) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{c.Server.TLS},
		ClientCAs:    c.CA.Pool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
}

// ClientConfig trusts CA and sends no certificate; set Certificates to
// []tls.Certificate{c.Client.TLS} for mTLS. Dial 127.0.0.1, ::1 or
// localhost, or set ServerName.
func (c *Certs) ClientConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.CA.Pool}
}
