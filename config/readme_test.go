package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// yamlBlockAfter returns the first ```yaml block after the heading in text.
func yamlBlockAfter(t *testing.T, text, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatalf("README has no yaml block after %q", heading)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README's yaml block after %q does not end", heading)
	}
	return block
}

// The README's configuration reference (and its abuse block, which it points
// to) show Default(): a default changed in one place and not the other fails
// here. Only the example listeners and the example limits.api entry are not
// defaults.
func TestReadmeShowsDefaults(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	ref := yamlBlockAfter(t, text, "## Configuration")
	abuse := yamlBlockAfter(t, text, "## Abuse: bans, per-IP caps and connection rate")
	var lines []string
	for _, l := range strings.Split(ref, "\n") {
		if !strings.HasPrefix(l, "abuse: {...}") { // the reference points to the abuse block
			lines = append(lines, l)
		}
	}
	cfg, err := Load(writeFile(t, strings.Join(lines, "\n")+abuse), nil)
	if err != nil {
		t.Fatalf("README's configuration blocks do not load: %v", err)
	}
	if len(cfg.Listeners) == 0 || len(cfg.Limits.API) == 0 {
		t.Fatalf("README's reference lost its example listeners or limits.api: %+v", cfg)
	}
	cfg.Listeners, cfg.Limits.API = nil, nil
	if len(cfg.Limits.DenyAPI) == 0 { // "[]" loads as an empty list, the default is nil: both none
		cfg.Limits.DenyAPI = nil
	}
	if len(cfg.Abuse.Allow) == 0 {
		cfg.Abuse.Allow = nil
	}
	if d := Default(); !reflect.DeepEqual(cfg, d) {
		t.Errorf("README's configuration reference drifted from Default():\n%+v\nwant\n%+v", cfg, d)
	}
}
