package app

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/config"
	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// An empty upstream_tls.server_name checks the broker's certificate for
// the host kafkaguard dials, as a Kafka client would.
func TestUpstreamTLSServerName(t *testing.T) {
	for _, tc := range []struct {
		name, upstream, want string
	}{
		{"", "kafka-0.kafka-headless:9093", "kafka-0.kafka-headless"},
		{"", "127.0.0.1:19093", "127.0.0.1"},
		{"", "[::1]:19093", "::1"},
		{"broker.example", "127.0.0.1:19093", "broker.example"},
	} {
		if got := upstreamTLSFiles(&config.UpstreamTLS{ServerName: tc.name}, tc.upstream).ServerName; got != tc.want {
			t.Errorf("server_name %q, upstream %s: checks %q, want %q", tc.name, tc.upstream, got, tc.want)
		}
	}
}

// Whatever TLS config `kafkaguard validate` passes, Build runs with, and
// what it refuses never reaches Build: the wiring adds no check of its own
// that a validated config could fail at start.
func TestTLSConfigsThatValidateBuild(t *testing.T) {
	certs := tlstest.New(t)
	srv := fmt.Sprintf("cert_file: %s, key_file: %s", certs.ServerFiles.Cert, certs.ServerFiles.Key)
	cli := fmt.Sprintf("cert_file: %s, key_file: %s", certs.ClientFiles.Cert, certs.ClientFiles.Key)
	for _, tc := range []struct {
		name, upstream, listener string
		valid                    bool
	}{
		{"tls", "127.0.0.1:19092", "tls: {" + srv + "}", true},
		{"mtls 1.3", "127.0.0.1:19092", "tls: {" + srv + ", client_ca_file: " + certs.CAFile + ", client_auth: require, min_version: \"1.3\"}", true},
		{"request", "127.0.0.1:19092", "tls: {" + srv + ", client_ca_file: " + certs.CAFile + ", client_auth: request}", true},
		{"upstream system roots", "kafka-0.example:19093", "upstream_tls: {}", true},
		{"upstream ipv6 host", "[::1]:19093", "upstream_tls: {ca_file: " + certs.CAFile + "}", true},
		{"both sides, client cert", "127.0.0.1:19093", "tls: {" + srv + "}\n    upstream_tls: {ca_file: " + certs.CAFile + ", server_name: kafka-0, " + cli + "}", true},
		{"require without a ca", "127.0.0.1:19092", "tls: {" + srv + ", client_auth: require}", false},
		{"half a client cert", "127.0.0.1:19093", "upstream_tls: {cert_file: " + certs.ClientFiles.Cert + "}", false},
		{"expired", "127.0.0.1:19092", fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", certs.ExpiredFiles.Cert, certs.ExpiredFiles.Key), false},
		{"key of another cert", "127.0.0.1:19092", fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", certs.ServerFiles.Cert, certs.ClientFiles.Key), false},
		{"tls 1.1", "127.0.0.1:19092", "tls: {" + srv + ", min_version: \"1.1\"}", false},
		{"skip verify is no option", "127.0.0.1:19093", "upstream_tls: {insecure_skip_verify: true}", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
			text := fmt.Sprintf("listeners:\n  - address: 127.0.0.1:0\n    upstream: \"%s\"\n    %s\n", tc.upstream, tc.listener)
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.LoadValid(path, nil)
			if !tc.valid {
				if err == nil {
					t.Fatalf("validated:\n%s", text)
				}
				return
			}
			if err != nil {
				t.Fatalf("does not validate: %v\n%s", err, text)
			}
			a, err := Build(cfg, zerolog.Nop())
			if err != nil {
				t.Fatalf("validated but Build fails: %v", err)
			}
			r := a.Server().Options().Routes[0]
			if (r.TLS != nil) != (cfg.Listeners[0].TLS != nil) || (r.UpstreamTLS != nil) != (cfg.Listeners[0].UpstreamTLS != nil) {
				t.Errorf("route TLS %v / upstream TLS %v, config %v / %v", r.TLS != nil, r.UpstreamTLS != nil,
					cfg.Listeners[0].TLS != nil, cfg.Listeners[0].UpstreamTLS != nil)
			}
		})
	}
}
