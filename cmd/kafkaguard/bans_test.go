package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/cmd/internal/app"
	"github.com/kafkaguard/kafkaguard/config"
)

// guardedKafkaguard runs an App (in this process) whose admin address needs a token, and returns its
// config file and token file.
func guardedKafkaguard(t *testing.T) (cfgPath, tokenFile, adminAddr string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("cli-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adminAddr = freePort(t)
	cfgPath = filepath.Join(dir, "kafkaguard.yaml")
	yml := fmt.Sprintf("listeners: [{address: 127.0.0.1:0, upstream: %s}]\nadmin: {address: %s, token_file: %s}\n",
		freePort(t), adminAddr, tokenFile)
	if err := os.WriteFile(cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadValid(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop() })
	return cfgPath, tokenFile, adminAddr
}

// `kafkaguard bans` lists, adds and lifts bans through the admin API, and says what to do when it
// cannot: no token, a bad request, nobody listening.
func TestBansCommand(t *testing.T) {
	cfgPath, tokenFile, adminAddr := guardedKafkaguard(t)
	closed := freePort(t)
	steps := []struct {
		name string
		args []string
		out  string // in stdout when err is ""
		err  string // in the error
	}{
		{"list, none", []string{"list", "--config", cfgPath}, "no bans in force", ""},
		{"add without a token", []string{"add", "192.0.2.7", "--for", "10m", "--admin", adminAddr}, "", "pass --token-file"},
		{"add with a wrong token file", []string{"add", "192.0.2.7", "--for", "10m", "--admin", adminAddr, "--token-file", cfgPath}, "", "--token-file"},
		{"add", []string{"add", "192.0.2.7", "--for", "10m", "--reason", "incident 42", "--admin", adminAddr, "--token-file", tokenFile},
			"banned 192.0.2.7 until", ""},
		{"add a bad source", []string{"add", "--config", cfgPath, "192.0.2.300", "--for", "10m"}, "", "400: source: bad address"},
		{"list", []string{"list", "--config", cfgPath}, "192.0.2.7  incident 42", ""},
		{"lift", []string{"lift", "192.0.2.7", "--config", cfgPath}, "unbanned 192.0.2.7", ""},
		{"lift again", []string{"lift", "192.0.2.7", "--config", cfgPath}, "", "404 Not Found: no active ban"},
		{"nobody listening", []string{"list", "--admin", closed}, "", "connection refused"},
		{"no source", []string{"lift", "--config", cfgPath}, "", "want SOURCE"},
	}
	for _, s := range steps {
		var stdout, stderr bytes.Buffer
		err := run(append([]string{"bans"}, s.args...), &stdout, &stderr)
		switch {
		case s.err == "" && err != nil:
			t.Errorf("%s: %v", s.name, err)
		case s.err != "" && (err == nil || !strings.Contains(err.Error(), s.err)):
			t.Errorf("%s: error %v, want one containing %q", s.name, err, s.err)
		case s.err == "" && !strings.Contains(strings.Join(strings.Fields(stdout.String()), " "), strings.Join(strings.Fields(s.out), " ")):
			t.Errorf("%s: output %q, want it to contain %q", s.name, stdout.String(), s.out)
		}
	}
}
