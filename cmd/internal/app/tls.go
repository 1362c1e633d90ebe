package app

import (
	"crypto/tls"
	"net"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/config"
	"github.com/kafkaguard/kafkaguard/proxy"
)

// clientAuth maps listeners[].tls.client_auth to crypto/tls: request and
// require both verify against client_ca_file (config refuses them without
// it), so no unverified certificate subject ever reaches a log line.
var clientAuth = map[string]tls.ClientAuthType{
	"":                       tls.NoClientCert,
	config.ClientAuthNone:    tls.NoClientCert,
	config.ClientAuthRequest: tls.VerifyClientCertIfGiven,
	config.ClientAuthRequire: tls.RequireAndVerifyClientCert,
}

// tlsVersion maps listeners[].tls.min_version to crypto/tls.
var tlsVersion = map[string]uint16{
	"":                  tls.VersionTLS12,
	config.TLSVersion12: tls.VersionTLS12,
	config.TLSVersion13: tls.VersionTLS13,
}

// serverTLSFiles is what a listener's tls section asks of the proxy.
func serverTLSFiles(t *config.ListenerTLS) proxy.ServerTLSFiles {
	return proxy.ServerTLSFiles{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile,
		ClientAuth: clientAuth[t.ClientAuth], MinVersion: tlsVersion[t.MinVersion]}
}

// upstreamTLSFiles is what a listener's upstream_tls section asks of the
// proxy; an empty server_name is the upstream's host, as a Kafka client
// checks the host it dials.
func upstreamTLSFiles(u *config.UpstreamTLS, upstream string) proxy.UpstreamTLSFiles {
	name := u.ServerName
	if name == "" {
		name, _, _ = net.SplitHostPort(upstream)
	}
	return proxy.UpstreamTLSFiles{CAFile: u.CAFile, ServerName: name, CertFile: u.CertFile, KeyFile: u.KeyFile}
}

// buildTLS loads listener l's certificate files into r. Validate read them
// already; an error here is a file that changed since, and names it.
func buildTLS(r *proxy.Route, l config.Listener, log zerolog.Logger, m *proxy.TLSMetrics) error {
	opts := proxy.TLSFileOptions{Listener: l.Address, Logger: log, Metrics: m}
	if t := l.TLS; t != nil {
		src, err := proxy.NewServerTLS(serverTLSFiles(t), opts)
		if err != nil {
			return err
		}
		r.TLS = src
	}
	if u := l.UpstreamTLS; u != nil {
		src, err := proxy.NewUpstreamTLS(upstreamTLSFiles(u, l.Upstream), opts)
		if err != nil {
			return err
		}
		r.UpstreamTLS = src
	}
	return nil
}
