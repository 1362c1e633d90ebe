package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ListenerTLS makes clients speak TLS to a listener. A listener without it
// is plaintext; there is no fallback from one to the other.
type ListenerTLS struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key served to
	// clients. Both required; re-read when they change.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
	// ClientCAFile is a PEM bundle of CAs that sign client certificates.
	// Required when ClientAuth is request or require.
	ClientCAFile string `koanf:"client_ca_file"`
	// ClientAuth is none (the default, also ""), request (verify a client
	// certificate if one is sent) or require (refuse a client without one).
	ClientAuth string `koanf:"client_auth"`
	// MinVersion is "1.2" (the default, also "") or "1.3".
	MinVersion string `koanf:"min_version"`
}

// UpstreamTLS makes kafkaguard speak TLS to the broker. A listener without
// it speaks plaintext to its broker. There is deliberately no way to skip
// verifying the broker's certificate.
type UpstreamTLS struct {
	// CAFile is a PEM bundle of CAs that sign the broker's certificate;
	// "" means the system's roots.
	CAFile string `koanf:"ca_file"`
	// ServerName is the name the broker's certificate must carry; "" means
	// the host of the listener's upstream.
	ServerName string `koanf:"server_name"`
	// CertFile and KeyFile, both or neither, are a client certificate for
	// brokers that require mTLS.
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
}

// Values of ListenerTLS.ClientAuth.
const (
	ClientAuthNone    = "none"
	ClientAuthRequest = "request"
	ClientAuthRequire = "require"
)

// Values of ListenerTLS.MinVersion.
const (
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"
)

// Values of Listener.SASL.
const (
	// SASLPassthrough forwards SASL exchanges without requiring one.
	SASLPassthrough = "passthrough"
	// SASLRequire allows only ApiVersions, SaslHandshake and
	// SaslAuthenticate until the broker has accepted the client's login.
	SASLRequire = "require"
)

// ExpiryWarning is how close to its end a certificate's validity draws a
// warning from Warnings.
const ExpiryWarning = 7 * 24 * time.Hour

// ErrExpiresSoon marks a certificate that is still valid but ends within
// ExpiryWarning; Warnings reports it, Validate does not.
var ErrExpiresSoon = errors.New("certificate expires soon")

// validateTLS checks one listener's tls, upstream_tls and sasl settings and
// reads every file they name. Messages name files and certificate subjects,
// never file contents.
func (l Listener) validateTLS(p *problems, key string, now time.Time) {
	if s := l.SASL; s != "" && s != SASLPassthrough && s != SASLRequire {
		p.addf(key+".sasl", "must be passthrough or require, got %q", s)
	}
	if t := l.TLS; t != nil {
		k := key + ".tls"
		switch t.ClientAuth {
		case "", ClientAuthNone:
		case ClientAuthRequest, ClientAuthRequire:
			// request without a CA would ask for certificates it cannot
			// verify; their subjects would then reach log lines as if they
			// named someone. So request, like require, verifies.
			if t.ClientCAFile == "" {
				p.addf(k+".client_ca_file", "required when client_auth is %s: client certificates are always verified", t.ClientAuth)
			}
		default:
			p.addf(k+".client_auth", "must be none, request or require, got %q", t.ClientAuth)
		}
		if v := t.MinVersion; v != "" && v != TLSVersion12 && v != TLSVersion13 {
			p.addf(k+".min_version", "must be \"1.2\" or \"1.3\", got %q", v)
		}
		if t.CertFile == "" {
			p.addf(k+".cert_file", "required: the PEM certificate served to clients")
		}
		if t.KeyFile == "" {
			p.addf(k+".key_file", "required: the PEM key of cert_file")
		}
		if t.CertFile != "" && t.KeyFile != "" {
			checkKeyPair(p, k, t.CertFile, t.KeyFile, now)
		}
		if t.ClientCAFile != "" {
			checkCAFile(p, k+".client_ca_file", t.ClientCAFile, now)
		}
	}
	if u := l.UpstreamTLS; u != nil {
		k := key + ".upstream_tls"
		switch {
		case u.CertFile != "" && u.KeyFile == "":
			p.addf(k+".key_file", "required with cert_file (a client certificate needs its key)")
		case u.CertFile == "" && u.KeyFile != "":
			p.addf(k+".cert_file", "required with key_file (a client certificate needs its key)")
		case u.CertFile != "":
			checkKeyPair(p, k, u.CertFile, u.KeyFile, now)
		}
		if u.CAFile != "" {
			checkCAFile(p, k+".ca_file", u.CAFile, now)
		}
		if strings.ContainsAny(u.ServerName, " /:") {
			p.addf(k+".server_name", "must be a host name, got %q", u.ServerName)
		}
	}
}

// checkKeyPair reads and parses a certificate and its key, checks they
// belong together and that the certificate has not expired.
func checkKeyPair(p *problems, key, certFile, keyFile string, now time.Time) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		p.add(key+".cert_file", invalidf(err.Error()))
		return
	}
	certs, err := parseCerts(certPEM)
	if err != nil {
		p.addf(key+".cert_file", "%s: %v", certFile, err)
		return
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		p.add(key+".key_file", invalidf(err.Error()))
		return
	}
	// tls.X509KeyPair's messages describe the PEM's shape, never its bytes.
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		p.addf(key+".key_file", "%s does not pair with cert_file %s: %v", keyFile, certFile, err)
	}
	if leaf := certs[0]; now.After(leaf.NotAfter) {
		p.addf(key+".cert_file", "%s: certificate %q expired at %s", certFile, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
}

// checkCAFile reads a CA bundle: at least one certificate, not all expired.
func checkCAFile(p *problems, key, file string, now time.Time) {
	data, err := os.ReadFile(file)
	if err != nil {
		p.add(key, invalidf(err.Error()))
		return
	}
	certs, err := parseCerts(data)
	if err != nil {
		p.addf(key, "%s: %v", file, err)
		return
	}
	for _, c := range certs {
		if !now.After(c.NotAfter) {
			return
		}
	}
	p.addf(key, "%s: every certificate in it has expired (the last at %s)", file, latest(certs).UTC().Format(time.RFC3339))
}

// parseCerts parses every CERTIFICATE block of a PEM file; anything else in
// it (a key by mistake) is an error, as is a file with no certificate.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %q PEM block where only certificates belong", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return certs, nil
}

func latest(certs []*x509.Certificate) time.Time {
	var t time.Time
	for _, c := range certs {
		if c.NotAfter.After(t) {
			t = c.NotAfter
		}
	}
	return t
}

// Warnings lists what a valid config may still get wrong soon, each a
// *KeyError: a certificate (served, client, or in a CA bundle) that expires
// within ExpiryWarning of now (ErrExpiresSoon), and a client_ca_file that
// client_auth none leaves unused (ErrInvalid). Files that cannot be read
// are Validate's problems, not repeated here.
func (c Config) Warnings(now time.Time) []error {
	var p problems
	soon := func(key, file string, leafOnly bool) {
		data, err := os.ReadFile(file)
		if err != nil {
			return
		}
		certs, err := parseCerts(data)
		if err != nil {
			return
		}
		if leafOnly {
			certs = certs[:1]
		}
		for _, cert := range certs {
			if left := cert.NotAfter.Sub(now); left > 0 && left <= ExpiryWarning {
				p.add(key, &detailError{sentinel: ErrExpiresSoon, msg: fmt.Sprintf("%s: certificate %q expires at %s, in %s",
					file, cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339), left.Round(time.Minute))})
			}
		}
	}
	for i, l := range c.Listeners {
		key := fmt.Sprintf("listeners[%d]", i)
		if t := l.TLS; t != nil {
			if t.CertFile != "" {
				soon(key+".tls.cert_file", t.CertFile, true)
			}
			if t.ClientCAFile != "" {
				soon(key+".tls.client_ca_file", t.ClientCAFile, false)
				if t.ClientAuth == "" || t.ClientAuth == ClientAuthNone {
					p.addf(key+".tls.client_ca_file", "unused: client_auth is none, so clients are not asked for certificates")
				}
			}
		}
		if u := l.UpstreamTLS; u != nil {
			if u.CertFile != "" {
				soon(key+".upstream_tls.cert_file", u.CertFile, true)
			}
			if u.CAFile != "" {
				soon(key+".upstream_tls.ca_file", u.CAFile, false)
			}
		}
	}
	return p
}
