package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// validate names every bad certificate file by its key, fails on an expired
// certificate, and prints a certificate that expires within 7 days as a
// warning without failing.
func TestValidateTLSFiles(t *testing.T) {
	certs := tlstest.New(t)
	soon := tlstest.Server("soon")
	soon.NotAfter = time.Now().Add(2 * 24 * time.Hour)
	soonFiles := certs.CA.Issue(t, soon).WriteFiles(t, certs.Dir, "soon")
	write := func(name, tlsBlock string) string {
		p := filepath.Join(t.TempDir(), name)
		text := "listeners:\n  - address: 127.0.0.1:9092\n    upstream: 127.0.0.1:19092\n" + tlsBlock
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		wantErr []string // in the error; none = valid
		wantOut string   // in stdout
	}{
		{"expired and missing", write("bad.yaml", "    tls: {cert_file: "+certs.ExpiredFiles.Cert+", key_file: "+certs.ExpiredFiles.Key+"}\n"+
			"    upstream_tls: {ca_file: "+filepath.Join(certs.Dir, "absent.crt")+"}\n"),
			[]string{"listeners[0].tls.cert_file: " + certs.ExpiredFiles.Cert + `: certificate "CN=expired,O=kafkaguard-test" expired at`,
				"listeners[0].upstream_tls.ca_file: open " + filepath.Join(certs.Dir, "absent.crt") + ": no such file"}, ""},
		{"expires soon", write("soon.yaml", "    tls: {cert_file: "+soonFiles.Cert+", key_file: "+soonFiles.Key+"}\n"),
			nil, "warning: listeners[0].tls.cert_file: " + soonFiles.Cert + `: certificate "CN=soon,O=kafkaguard-test" expires at`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run([]string{"validate", "--config", tt.path}, &out, &out)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
			} else {
				var ec *exitCode
				if !errors.As(err, &ec) || ec.code != 2 {
					t.Fatalf("validate = %v, want exit code 2", err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out.String())
			}
		})
	}
}
