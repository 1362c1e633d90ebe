package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// keyErrors flattens a joined error into its KeyErrors; anything else fails t.
func keyErrors(t *testing.T, err error) []*KeyError {
	t.Helper()
	var out []*KeyError
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var ke *KeyError
		if !errors.As(err, &ke) {
			t.Fatalf("problem %v (%T) is not a *KeyError", err, err)
		}
		out = append(out, ke)
	}
	if err != nil {
		walk(err)
	}
	return out
}

// wantProblem fails t unless err holds a KeyError for key whose message
// contains sub.
func wantProblem(t *testing.T, err error, key, sub string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s: ...%s...", key, sub)
	}
	for _, ke := range keyErrors(t, err) {
		if ke.Key == key && contains(ke.Error(), sub) {
			return
		}
	}
	t.Fatalf("error lacks %s: ...%s...; got:\n%v", key, sub, err)
}

// writeFile writes a YAML file in a fresh temporary directory.
func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// withListener returns Default with one listener, the smallest valid config.
func withListener() Config {
	c := Default()
	c.Listeners = []Listener{{Address: "0.0.0.0:9092", Upstream: "127.0.0.1:19092"}}
	return c
}
