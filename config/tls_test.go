package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// tlsFixture is a set of test certificates plus a few broken files.
type tlsFixture struct {
	*tlstest.Certs
	garbage, missing, soonCert, soonKey string
}

func newTLSFixture(t *testing.T) tlsFixture {
	t.Helper()
	c := tlstest.New(t)
	f := tlsFixture{Certs: c, garbage: filepath.Join(c.Dir, "garbage.pem"), missing: filepath.Join(c.Dir, "absent.crt")}
	tlstest.WriteFile(t, f.garbage, []byte("not a certificate\n"))
	soon := tlstest.Server("soon")
	soon.NotAfter = time.Now().Add(3 * 24 * time.Hour)
	files := c.CA.Issue(t, soon).WriteFiles(t, c.Dir, "soon")
	f.soonCert, f.soonKey = files.Cert, files.Key
	return f
}

func TestTLSValidate(t *testing.T) {
	f := newTLSFixture(t)
	serverTLS := func() *ListenerTLS {
		return &ListenerTLS{CertFile: f.ServerFiles.Cert, KeyFile: f.ServerFiles.Key}
	}
	tests := []struct {
		name   string
		modify func(l *Listener)
		key    string // "" = valid
		want   string
	}{
		{"server tls", func(l *Listener) { l.TLS = serverTLS() }, "", ""},
		{"mtls require", func(l *Listener) {
			l.TLS = serverTLS()
			l.TLS.ClientAuth, l.TLS.ClientCAFile, l.TLS.MinVersion = ClientAuthRequire, f.CAFile, TLSVersion13
		}, "", ""},
		{"upstream tls full", func(l *Listener) {
			l.UpstreamTLS = &UpstreamTLS{CAFile: f.CAFile, ServerName: "kafka-0.kafka", CertFile: f.ClientFiles.Cert, KeyFile: f.ClientFiles.Key}
			l.SASL = SASLRequire
		}, "", ""},
		{"upstream tls system roots", func(l *Listener) { l.UpstreamTLS = &UpstreamTLS{} }, "", ""},
		{"cert missing", func(l *Listener) { l.TLS = serverTLS(); l.TLS.CertFile = f.missing },
			"listeners[0].tls.cert_file", "open " + f.missing + ": no such file"},
		{"cert not set", func(l *Listener) { l.TLS = serverTLS(); l.TLS.CertFile = "" }, "listeners[0].tls.cert_file", "required"},
		{"key not set", func(l *Listener) { l.TLS = serverTLS(); l.TLS.KeyFile = "" }, "listeners[0].tls.key_file", "required"},
		{"cert garbage", func(l *Listener) { l.TLS = serverTLS(); l.TLS.CertFile = f.garbage }, "listeners[0].tls.cert_file", "no PEM certificate"},
		{"key given as cert", func(l *Listener) { l.TLS = serverTLS(); l.TLS.CertFile = f.ServerFiles.Key },
			"listeners[0].tls.cert_file", `"PRIVATE KEY" PEM block where only certificates belong`},
		{"key missing", func(l *Listener) { l.TLS = serverTLS(); l.TLS.KeyFile = f.missing }, "listeners[0].tls.key_file", "no such file"},
		{"key of another cert", func(l *Listener) { l.TLS = serverTLS(); l.TLS.KeyFile = f.ClientFiles.Key },
			"listeners[0].tls.key_file", "does not pair with cert_file"},
		{"cert expired", func(l *Listener) {
			l.TLS = &ListenerTLS{CertFile: f.ExpiredFiles.Cert, KeyFile: f.ExpiredFiles.Key}
		}, "listeners[0].tls.cert_file", `certificate "CN=expired,O=kafkaguard-test" expired at`},
		{"request without ca", func(l *Listener) { l.TLS = serverTLS(); l.TLS.ClientAuth = ClientAuthRequest },
			"listeners[0].tls.client_ca_file", "required when client_auth is request"},
		{"require without ca", func(l *Listener) { l.TLS = serverTLS(); l.TLS.ClientAuth = ClientAuthRequire },
			"listeners[0].tls.client_ca_file", "required when client_auth is require"},
		{"client auth bad", func(l *Listener) { l.TLS = serverTLS(); l.TLS.ClientAuth = "optional" },
			"listeners[0].tls.client_auth", `must be none, request or require, got "optional"`},
		{"client ca garbage", func(l *Listener) {
			l.TLS = serverTLS()
			l.TLS.ClientAuth, l.TLS.ClientCAFile = ClientAuthRequire, f.garbage
		}, "listeners[0].tls.client_ca_file", "no PEM certificate"},
		{"min version 1.1", func(l *Listener) { l.TLS = serverTLS(); l.TLS.MinVersion = "1.1" },
			"listeners[0].tls.min_version", `must be "1.2" or "1.3", got "1.1"`},
		{"upstream cert without key", func(l *Listener) { l.UpstreamTLS = &UpstreamTLS{CertFile: f.ClientFiles.Cert} },
			"listeners[0].upstream_tls.key_file", "required with cert_file"},
		{"upstream key without cert", func(l *Listener) { l.UpstreamTLS = &UpstreamTLS{KeyFile: f.ClientFiles.Key} },
			"listeners[0].upstream_tls.cert_file", "required with key_file"},
		{"upstream ca missing", func(l *Listener) { l.UpstreamTLS = &UpstreamTLS{CAFile: f.missing} },
			"listeners[0].upstream_tls.ca_file", "no such file"},
		{"upstream client cert expired", func(l *Listener) {
			l.UpstreamTLS = &UpstreamTLS{CertFile: f.ExpiredFiles.Cert, KeyFile: f.ExpiredFiles.Key}
		}, "listeners[0].upstream_tls.cert_file", "expired at"},
		{"upstream server name with port", func(l *Listener) { l.UpstreamTLS = &UpstreamTLS{ServerName: "kafka:9093"} },
			"listeners[0].upstream_tls.server_name", "must be a host name"},
		{"sasl bad", func(l *Listener) { l.SASL = "plain" }, "listeners[0].sasl", `must be passthrough or require, got "plain"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := withListener()
			tt.modify(&c.Listeners[0])
			err := c.Validate()
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			wantProblem(t, err, tt.key, tt.want)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%v does not match ErrInvalid", err)
			}
		})
	}
}

// No message quotes a key file's contents, whatever is wrong with it.
func TestTLSValidateNeverPrintsKeys(t *testing.T) {
	f := newTLSFixture(t)
	keyText := string(f.Server.KeyPEM)
	body := strings.Split(strings.TrimSpace(keyText), "\n")[1]
	swapped := filepath.Join(f.Dir, "swapped.key")
	tlstest.WriteFile(t, swapped, append(append([]byte{}, f.Server.CertPEM...), f.Client.KeyPEM...))
	for _, tls := range []*ListenerTLS{
		{CertFile: f.ServerFiles.Key, KeyFile: f.ServerFiles.Key},   // key as certificate
		{CertFile: f.ServerFiles.Cert, KeyFile: f.ClientFiles.Key},  // mismatched
		{CertFile: f.ServerFiles.Cert, KeyFile: f.ServerFiles.Cert}, // certificate as key
		{CertFile: f.ServerFiles.Cert, KeyFile: swapped},
	} {
		c := withListener()
		c.Listeners[0].TLS = tls
		err := c.Validate()
		if err == nil {
			t.Fatalf("%+v: no error", tls)
		}
		if msg := err.Error(); strings.Contains(msg, body) || strings.Contains(msg, "BEGIN") {
			t.Errorf("%+v: message quotes PEM text:\n%s", tls, msg)
		}
	}
}

func TestTLSWarnings(t *testing.T) {
	f := newTLSFixture(t)
	c := withListener()
	c.Listeners[0].TLS = &ListenerTLS{CertFile: f.soonCert, KeyFile: f.soonKey, ClientCAFile: f.CAFile}
	c.Listeners[0].UpstreamTLS = &UpstreamTLS{CAFile: f.CAFile, CertFile: f.soonCert, KeyFile: f.soonKey}
	if err := c.Validate(); err != nil {
		t.Fatalf("a certificate expiring in 3 days is valid, got %v", err)
	}
	got := map[string]string{}
	for _, w := range c.Warnings(time.Now()) {
		var ke *KeyError
		if !errors.As(w, &ke) {
			t.Fatalf("warning %v is not a *KeyError", w)
		}
		got[ke.Key] = ke.Error()
	}
	want := map[string]string{
		"listeners[0].tls.cert_file":          "expires at",
		"listeners[0].upstream_tls.cert_file": "expires at",
		"listeners[0].tls.client_ca_file":     "unused: client_auth is none",
	}
	for k, sub := range want {
		if !strings.Contains(got[k], sub) {
			t.Errorf("warning for %s = %q, want it to mention %q", k, got[k], sub)
		}
	}
	if len(got) != len(want) {
		t.Errorf("warnings = %v, want keys %v", got, want)
	}
	if w := c.Warnings(time.Now().Add(-8 * 24 * time.Hour)); len(w) != 1 {
		t.Errorf("8 days earlier only the unused CA is worth a warning, got %v", w)
	}
}

func TestTLSLoadYAML(t *testing.T) {
	f := newTLSFixture(t)
	path := writeFile(t, `
listeners:
  - address: 0.0.0.0:9093
    upstream: 127.0.0.1:19093
    tls:
      cert_file: `+f.ServerFiles.Cert+`
      key_file: `+f.ServerFiles.Key+`
      client_ca_file: `+f.CAFile+`
      client_auth: require
      min_version: "1.3"
    upstream_tls:
      ca_file: `+f.CAFile+`
      server_name: kafka-0.kafka-headless
      cert_file: `+f.ClientFiles.Cert+`
      key_file: `+f.ClientFiles.Key+`
    sasl: require
timeouts: {tls_handshake: 3s}
limits: {max_unauthenticated_bytes: 32KiB}
`)
	c, err := LoadValid(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	if l.TLS == nil || l.TLS.ClientAuth != ClientAuthRequire || l.TLS.MinVersion != TLSVersion13 || l.TLS.ClientCAFile != f.CAFile {
		t.Errorf("tls = %+v", l.TLS)
	}
	if l.UpstreamTLS == nil || l.UpstreamTLS.ServerName != "kafka-0.kafka-headless" || l.UpstreamTLS.KeyFile != f.ClientFiles.Key {
		t.Errorf("upstream_tls = %+v", l.UpstreamTLS)
	}
	if l.SASL != SASLRequire || c.Timeouts.TLSHandshake != 3*time.Second || c.Limits.MaxUnauthenticatedBytes != 32*KiB {
		t.Errorf("sasl %q, tls_handshake %s, max_unauthenticated_bytes %s", l.SASL, c.Timeouts.TLSHandshake, c.Limits.MaxUnauthenticatedBytes)
	}
	d := Default()
	if d.Timeouts.TLSHandshake != 10*time.Second || d.Limits.MaxUnauthenticatedBytes != 64*KiB {
		t.Errorf("defaults: tls_handshake %s, max_unauthenticated_bytes %s", d.Timeouts.TLSHandshake, d.Limits.MaxUnauthenticatedBytes)
	}

	// A typo inside the tls section is named with a suggestion.
	bad := writeFile(t, "listeners:\n  - {address: 0.0.0.0:9093, upstream: 127.0.0.1:19093, tls: {cert_fle: x}}\n")
	_, err = Load(bad, nil)
	wantProblem(t, err, "listeners[0].tls.cert_fle", "did you mean cert_file?")
	if _, err := os.Stat(bad); err != nil {
		t.Fatal(err)
	}
}

func TestTLSLimitsAndTimeoutsValidate(t *testing.T) {
	c := withListener()
	c.Timeouts.TLSHandshake = 0
	c.Limits.MaxUnauthenticatedBytes = 100
	err := c.Validate()
	wantProblem(t, err, "timeouts.tls_handshake", "must be positive")
	wantProblem(t, err, "limits.max_unauthenticated_bytes", "between 1KiB and 16MiB, got 100B")
}
