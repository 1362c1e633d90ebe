package app

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafkaguard/kafkaguard/config"
)

// Console logs carry colour only on a terminal: into a pipe, a file or a buffer (kubectl logs, journald,
// a redirect) escape codes are noise an operator has to strip before grepping.
func TestNewLoggerColourOnlyOnTerminal(t *testing.T) {
	t.Setenv("NO_COLOR", "")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var buf bytes.Buffer
	for _, tc := range []struct {
		name string
		w    io.Writer
		read func() string
	}{
		{"pipe", pw, func() string {
			b := make([]byte, 4096)
			n, _ := pr.Read(b) // one write of one line: it is in the pipe already
			return string(b[:n])
		}},
		{"file", file, func() string {
			b, err := os.ReadFile(file.Name())
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}},
		{"buffer", &buf, buf.String},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLogger(config.Log{Level: "info", Format: "console"}, tc.w)
			if err != nil {
				t.Fatal(err)
			}
			l.Warn().Str("listener", "127.0.0.1:9092").Msg("upstream does not answer")
			out := tc.read()
			if strings.Contains(out, "\x1b[") {
				t.Errorf("colour escapes in a %s: %q", tc.name, out)
			}
			if !strings.Contains(out, "upstream does not answer") || !strings.Contains(out, "listener=127.0.0.1:9092") {
				t.Errorf("console line %q", out)
			}
		})
	}
	pw.Close()
}
