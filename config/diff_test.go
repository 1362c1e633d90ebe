package config

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	base := Default()
	base.Listeners = []Listener{{Address: "127.0.0.1:9092", Upstream: "127.0.0.1:19092"}}
	tests := []struct {
		name   string
		change func(*Config)
		want   []Change
		live   []bool
	}{
		{"nothing", func(*Config) {}, nil, nil},
		{"a limit", func(c *Config) { c.Limits.MaxRequestBytes = 2 * MiB },
			[]Change{{"limits.max_request_bytes", "1MiB", "2MiB"}}, []bool{true}},
		{"a timeout and the pool", func(c *Config) { c.Timeouts.Idle = time.Minute; c.Pool.TotalBytes = 128 * MiB },
			[]Change{{"pool.total_bytes", "64MiB", "128MiB"}, {"timeouts.idle", "10m0s", "1m0s"}}, []bool{false, true}},
		{"a weight", func(c *Config) { c.Abuse.Weights.Closed = 2 },
			[]Change{{"abuse.weights.closed", "1", "2"}}, []bool{true}},
		{"a listener added", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Address: "127.0.0.1:9093", Upstream: "127.0.0.1:19093"})
		}, []Change{{Key: "listeners"}}, []bool{true}},
		{"log format and level", func(c *Config) { c.Log.Format = "console"; c.Log.Level = "warn" },
			[]Change{{"log.format", `"json"`, `"console"`}, {"log.level", `"info"`, `"warn"`}}, []bool{false, true}},
		{"the prefix length", func(c *Config) { c.Abuse.IPv6Prefix = 48 },
			[]Change{{"abuse.ipv6_prefix", "64", "48"}}, []bool{false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next := base
			next.Listeners = append([]Listener(nil), base.Listeners...)
			tc.change(&next)
			got := Diff(base, next)
			if len(got) != len(tc.want) {
				t.Fatalf("Diff = %+v, want %+v", got, tc.want)
			}
			for i, w := range tc.want {
				if got[i].Key != w.Key || (w.Old != "" && (got[i].Old != w.Old || got[i].New != w.New)) {
					t.Errorf("change %d = %+v, want %+v", i, got[i], w)
				}
				if Live(got[i].Key) != tc.live[i] {
					t.Errorf("Live(%s) = %v, want %v", got[i].Key, !tc.live[i], tc.live[i])
				}
			}
		})
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want, err string
	}{
		{"plain", "s3cret", "s3cret", ""},
		{"trailing newline", "s3cret\n", "s3cret", ""},
		{"crlf", "s3cret\r\n", "s3cret", ""},
		{"empty", "", "", "is empty"},
		{"only a newline", "\n", "", "is empty"},
		{"two lines", "a\nb\n", "", "whitespace"},
		{"too large", strings.Repeat("x", 5000), "", "over 4096 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadToken(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ReadToken = %q, %v; want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ReadToken = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ReadToken(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing file: no error")
	}
}

// Merge takes the file's value for live keys and keeps the running value of the others, naming them.
func TestMerge(t *testing.T) {
	running := Default()
	running.Listeners = []Listener{{Address: "127.0.0.1:9092", Upstream: "127.0.0.1:19092"}}
	next := running
	next.Limits.MaxRequestBytes = 2 * MiB
	next.Abuse.Weights.Closed = 3
	next.Pool.TotalBytes = 128 * MiB
	next.Abuse.Enabled = false
	got, kept := Merge(running, next)
	if got.Limits.MaxRequestBytes != 2*MiB || got.Abuse.Weights.Closed != 3 {
		t.Errorf("live keys not taken: %+v %+v", got.Limits, got.Abuse.Weights)
	}
	if got.Pool.TotalBytes != 64*MiB || !got.Abuse.Enabled {
		t.Errorf("fixed keys changed: pool %v, abuse.enabled %v", got.Pool.TotalBytes, got.Abuse.Enabled)
	}
	want := []Change{{"abuse.enabled", "true", "false"}, {"pool.total_bytes", "64MiB", "128MiB"}}
	if len(kept) != len(want) || kept[0] != want[0] || kept[1] != want[1] {
		t.Errorf("kept = %+v, want %+v", kept, want)
	}
}

func TestMapWritesValuesAsTheFileDoes(t *testing.T) {
	c := Default()
	c.Abuse.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	c.Admin.TokenFile = "/run/secrets/admin-token"
	m := c.Map()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"max_request_bytes":"1MiB"`, `"idle":"10m0s"`, `"connection_rate_per_ip":"50/s"`,
		`"allow":["10.0.0.0/8"]`, `"token_file":"/run/secrets/admin-token"`, `"enabled":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Map as JSON lacks %s:\n%s", want, b)
		}
	}
}
