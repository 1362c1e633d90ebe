package app

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// limits.max_client_id_bytes: 0 means no limit beyond the 32767 bytes the header's int16 length can
// carry, as 0 means "no cap" for abuse.max_connections_per_ip: a client with a long id is served, not
// refused, and the config's comment, the example and the README all say so. (0 as "no client id at
// all" would refuse the Java client, librdkafka and franz-go, which all send one by default.)
func TestMaxClientIDZeroMeansNoLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MaxClientIDBytes = 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := Build(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Server().Options().Policy.MaxClientIDBytes(); got != 32767 {
		t.Fatalf("max_client_id_bytes 0 runs with a %d-byte limit, want 32767 (the protocol's)", got)
	}
	zero := regexp.MustCompile(`0 = no limit`)
	for _, f := range []struct{ path, near string }{
		{"../../../deploy/kafkaguard.yaml", "max_client_id_bytes"},
		{"../../../README.md", "max_client_id_bytes"},
		{"../../../config/config.go", "MaxClientIDBytes int"},
	} {
		raw, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		text := string(raw)
		i := strings.Index(text, f.near)
		if i < 0 {
			t.Fatalf("%s does not mention %s", f.path, f.near)
		}
		if !zero.MatchString(text[max(0, i-300):min(len(text), i+300)]) {
			t.Errorf("%s: near %s, nothing says \"0 = no limit\"", f.path, f.near)
		}
	}
}
