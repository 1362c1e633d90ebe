package proxy

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// A config reload need not wait for CheckEvery: CheckNow puts a rotated certificate in force for the
// next handshake.
func TestTLSCheckNow(t *testing.T) {
	certs := tlstest.New(t)
	first := certs.CA.Issue(t, tlstest.Server("first"))
	second := certs.CA.Issue(t, tlstest.Spec{CommonName: "second", IPs: first.Cert.IPAddresses, NotAfter: first.Cert.NotAfter})
	d := newK8sDir(t, first)
	src, err := NewServerTLS(ServerTLSFiles{CertFile: d.cert(), KeyFile: d.key(), ClientCAFile: certs.CAFile, ClientAuth: tls.VerifyClientCertIfGiven},
		TLSFileOptions{Listener: "127.0.0.1:9093", CheckEvery: time.Hour, Logger: zerolog.Nop(), Metrics: NewTLSMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	e := newTLSEcho(t, src.ServerConfig(), 5*time.Second)
	served := func() string { return servedName(t, e.addr(), certs.ClientConfig()) }
	d.publish(second.CertPEM, second.KeyPEM)
	if got := served(); got != "first" {
		t.Fatalf("served %q before the check was due, want first", got)
	}
	src.CheckNow()
	if got := served(); got != "second" {
		t.Fatalf("served %q after CheckNow, want second", got)
	}
}
