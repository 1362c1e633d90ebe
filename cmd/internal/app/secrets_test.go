package app

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// A secret file every user of the host may read (a TLS private key, the admin token) is named in a
// warning at start and after each reload, with its key and mode; one only its owner (or group) reads is
// not, and nothing is refused either way.
func TestReadableSecretsWarned(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no mode bits")
	}
	certs := tlstest.New(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	writeFile(t, token, "s3cret-token-of-32-characters-xx\n")
	if err := os.Chmod(certs.ServerFiles.Key, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kafkaguard.yaml")
	writeFile(t, path, fmt.Sprintf(`listeners:
  - address: 127.0.0.1:0
    upstream: %s
    tls: {cert_file: %s, key_file: %s}
admin: {address: "", token_file: %s}
`, freeAddr(t), certs.ServerFiles.Cert, certs.ServerFiles.Key, token))

	a, logs := reloadApp(t, path, -1)
	warned := func(key string) bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "secret file is readable by every user") && strings.Contains(line, `"key":"`+key+`"`) {
				return true
			}
		}
		return false
	}
	if !warned("listeners[0].tls.key_file") || !strings.Contains(logs.String(), `"mode":"0644"`) {
		t.Errorf("no warning naming the 0644 key file:\n%s", logs.String())
	}
	if warned("admin.token_file") {
		t.Errorf("the 0600 token file was warned about:\n%s", logs.String())
	}

	if err := os.Chmod(certs.ServerFiles.Key, 0o440); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(token, 0o604); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if err := a.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if !warned("admin.token_file") || warned("listeners[0].tls.key_file") {
		t.Errorf("after the reload: want a warning for the 0604 token only:\n%s", logs.String())
	}
}
