package app

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// expirySeries lists the certificate-expiry gauge's series of a as "listener role", sorted.
func expirySeries(t *testing.T, a *App) []string {
	t.Helper()
	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "kafkaguard_tls_certificate_expiry_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var l, r string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "listener":
					l = lp.GetValue()
				case "role":
					r = lp.GetValue()
				}
			}
			out = append(out, l+" "+r)
		}
	}
	slices.Sort(out)
	return out
}

// A reload that removes a TLS listener, or replaces it by one without TLS, drops its certificate
// sources: the reload stops checking their files and the expiry gauge stops showing them, so the
// CertificateExpiring alert cannot fire for a certificate no listener serves. A listener that stays
// keeps its series even when it serves the same files, and a listener added under the label of the
// one removed (an address ending in :0) keeps the series of its own files. The route removed is the
// one built for the removed entry, TLS sources and all: a TLS listener named by host name or at :0 is
// really removed, and a plaintext listener added at :0 in its place is the one left serving.
func TestReloadDropsRemovedListenersCertificates(t *testing.T) {
	certs := tlstest.New(t)
	up := kfakeBrokers(t, 2)
	srv := fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", certs.ServerFiles.Cert, certs.ServerFiles.Key)
	mtls := fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s, client_auth: require}",
		certs.ServerFiles.Cert, certs.ServerFiles.Key, certs.CAFile)
	upTLS := fmt.Sprintf("upstream_tls: {ca_file: %s, server_name: kafka-0}", certs.CAFile)
	kept, gone := freeAddr(t), freeAddr(t)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	named := "localhost:" + port // bound as 127.0.0.1 (or [::1]): not the configured string
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	busy := held.Addr().String()
	const any = "127.0.0.1:0"
	type l struct {
		addr, tls string
		up        int // which kfake broker
	}
	for _, tc := range []struct {
		name         string
		before, next []l
		want         []string // expiry series after the reload
		sources      int      // TLS sources the App still checks
		fails        bool     // the reload fails (a listener cannot bind) and changes nothing
	}{
		{"listener removed, its files shared with one kept",
			[]l{{kept, srv, 0}, {gone, srv + "\n    " + upTLS, 1}}, []l{{kept, srv, 0}},
			[]string{kept + " server"}, 1, false},
		{"TLS listener named by host name removed",
			[]l{{kept, srv, 0}, {named, srv, 1}}, []l{{kept, srv, 0}},
			[]string{kept + " server"}, 1, false},
		{"every TLS listener removed",
			[]l{{kept, "", 0}, {gone, mtls, 1}}, []l{{kept, "", 0}},
			nil, 0, false},
		{"tls turned off (remove and add at :0)",
			[]l{{any, srv + "\n    " + upTLS, 0}}, []l{{any, "", 0}},
			nil, 0, false},
		{"tls replaced under the same label",
			[]l{{any, srv, 0}}, []l{{any, mtls, 0}},
			[]string{any + " client_ca", any + " server"}, 1, false},
		{"reload fails after loading an added listener's files",
			[]l{{kept, srv, 0}}, []l{{kept, srv, 0}, {busy, mtls + "\n    " + upTLS, 1}},
			[]string{kept + " server"}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := func(ls []l) string {
				var b strings.Builder
				b.WriteString("admin: {address: \"\"}\ntimeouts: {shutdown: 2s}\nlisteners:\n")
				for _, x := range ls {
					fmt.Fprintf(&b, "  - address: %s\n    upstream: %s\n", x.addr, up[x.up])
					if x.tls != "" {
						fmt.Fprintf(&b, "    %s\n", x.tls)
					}
				}
				return b.String()
			}
			path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
			writeFile(t, path, cfg(tc.before))
			a, _ := reloadApp(t, path, -1)
			if len(expirySeries(t, a)) == 0 {
				t.Fatal("no expiry series before the reload")
			}
			writeFile(t, path, cfg(tc.next))
			if err := a.Reload("test"); (err != nil) != tc.fails {
				t.Fatalf("Reload = %v, want failure %v", err, tc.fails)
			}
			want := len(tc.before)
			if !tc.fails {
				want = len(tc.next)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(a.Server().Addrs()) != want { // a removed listener drains in the background
				if time.Now().After(deadline) {
					t.Fatalf("%d listeners serve 5s after the reload, want %d", len(a.Server().Addrs()), want)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if !tc.fails {
				// Each plaintext listener of the new file serves (a reload that removed the new
				// listener in place of the old TLS one would leave a TLS listener there).
				for _, x := range tc.next {
					if x.tls != "" {
						continue
					}
					addr := ""
					for _, r := range a.srv.RouteAddrs() {
						if r.Listen == x.addr && r.Upstream == up[x.up] {
							addr = r.Addr.String()
						}
					}
					if addr == "" || !metadataOn(t, dial(t, addr), 1) {
						t.Errorf("plaintext listener %s -> %s does not serve (bound %q)", x.addr, up[x.up], addr)
					}
				}
			}
			if got := expirySeries(t, a); !slices.Equal(got, tc.want) {
				t.Errorf("expiry series after the reload = %q, want %q", got, tc.want)
			}
			if got := len(a.tlsSources()); got != tc.sources {
				t.Errorf("%d TLS sources checked after the reload, want %d", got, tc.sources)
			}
		})
	}
}
