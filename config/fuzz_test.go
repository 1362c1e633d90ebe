package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary YAML through Load and Validate: neither may panic,
// and every problem past YAML parsing must be a *KeyError naming a key.
func FuzzLoad(f *testing.F) {
	f.Add(briefExample)
	f.Add("limits: {max_request_bytes: 12XB, api: {Metadta: 1KiB}}\n")
	f.Add("listeners: [{address: 0.0.0.0:9092, upstream: x, node_id: 99999999999}]\n")
	f.Add("abuse: {allow: [10.0.0.0/33, 1.2.3.4], connection_rate_per_ip: 5/0s, weights: {closed: .nan}}\n")
	f.Add("limits: 5\nlisteners: {a: 1}\ntimeouts: [1, 2]\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(path, nil)
		if err != nil && strings.HasPrefix(err.Error(), "parse config ") {
			return
		}
		for _, ke := range keyErrors(t, err) {
			if ke.Err == nil {
				t.Fatalf("KeyError %q has no error", ke.Key)
			}
		}
		for _, ke := range keyErrors(t, cfg.Validate()) {
			if ke.Key == "" {
				t.Fatalf("Validate problem without a key: %v", ke)
			}
		}
	})
}
