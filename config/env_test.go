package config

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestEnvOverrides(t *testing.T) {
	path := writeFile(t, briefExample)
	cfg, err := Load(path, []string{
		"PATH=/usr/bin",
		"KAFKAGUARD_LIMITS__MAX_REQUEST_BYTES=2MiB",
		"KAFKAGUARD_LOG__LEVEL=debug",
		"KAFKAGUARD_LIMITS__API__PRODUCE=4MiB", // API names match regardless of case
		"KAFKAGUARD_LIMITS__DENY_API=CreateTopics, DeleteTopics",
		"KAFKAGUARD_ABUSE__ALLOW=192.168.0.0/16,127.0.0.1",
		"KAFKAGUARD_ABUSE__ENABLED=false",
		"KAFKAGUARD_ABUSE__WEIGHTS__CLOSED=2.5",
		"KAFKAGUARD_ABUSE__CONNECTION_RATE_PER_IP=600/m",
		"KAFKAGUARD_PROXY__MAX_INFLIGHT=64",
		"KAFKAGUARD_TIMEOUTS__IDLE=1m",
		"KAFKAGUARD_ADMIN__ADDRESS=",
		"KAFKAGUARD_LISTENERSX", // no "=": not a variable, ignored
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"limits.max_request_bytes", cfg.Limits.MaxRequestBytes, 2 * MiB},
		{"log.level", cfg.Log.Level, "debug"},
		{"limits.api", cfg.Limits.API, map[string]Size{"Metadata": 64 * KiB, "Produce": 4 * MiB}},
		{"limits.deny_api", cfg.Limits.DenyAPI, []string{"CreateTopics", "DeleteTopics"}},
		{"abuse.allow", cfg.Abuse.Allow, []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("127.0.0.1/32")}},
		{"abuse.enabled", cfg.Abuse.Enabled, false},
		{"abuse.weights.closed", cfg.Abuse.Weights.Closed, 2.5},
		{"abuse.connection_rate_per_ip", cfg.Abuse.ConnectionRatePerIP, Rate{600, time.Minute}},
		{"proxy.max_inflight", cfg.Proxy.MaxInflight, 64},
		{"timeouts.idle", cfg.Timeouts.Idle, time.Minute},
		{"admin.address", cfg.Admin.Address, ""},
		{"log.format (file, untouched)", cfg.Log.Format, "json"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestEnvWithoutFile(t *testing.T) {
	cfg, err := Load("", []string{"KAFKAGUARD_POOL__TOTAL_BYTES=128MiB"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pool.TotalBytes != 128*MiB {
		t.Fatalf("pool.total_bytes = %s, want 128MiB", cfg.Pool.TotalBytes)
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		name, env, key, want string
		sentinel             error
	}{
		{"unknown key", "KAFKAGUARD_LIMITS__MAX_REQEST_BYTES=1MiB", "limits.max_reqest_bytes", "unknown key (did you mean max_request_bytes?) (from KAFKAGUARD_LIMITS__MAX_REQEST_BYTES)", ErrUnknownKey},
		{"unknown section", "KAFKAGUARD_LIMIT__MAX_REQUEST_BYTES=1MiB", "limit.max_request_bytes", "did you mean limits?", ErrUnknownKey},
		{"single underscore", "KAFKAGUARD_LOG_LEVEL=debug", "log_level", "unknown key", ErrUnknownKey},
		{"too deep", "KAFKAGUARD_LOG__LEVEL__X=debug", "log.level.x", "unknown key", ErrUnknownKey},
		{"empty segment", "KAFKAGUARD_LOG____LEVEL=debug", "log..level", "empty key segment", ErrUnknownKey},
		{"prefix alone", "KAFKAGUARD_=1", "", "empty key segment", ErrUnknownKey},
		{"section as value", "KAFKAGUARD_LOG=debug", "log", "is a section", ErrInvalid},
		{"map as value", "KAFKAGUARD_LIMITS__API=1MiB", "limits.api", "is a section", ErrInvalid},
		{"listeners", "KAFKAGUARD_LISTENERS__0__ADDRESS=0.0.0.0:9092", "listeners.0.address", "cannot be set from the environment", nil},
		{"bad size", "KAFKAGUARD_LIMITS__MAX_REQUEST_BYTES=12XB", "limits.max_request_bytes", `invalid size "12XB": unknown unit "XB" (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB) (from KAFKAGUARD_LIMITS__MAX_REQUEST_BYTES)`, ErrInvalidSize},
		{"bad int", "KAFKAGUARD_PROXY__MAX_INFLIGHT=many", "proxy.max_inflight", "whole number", ErrInvalid},
		{"bad bool", "KAFKAGUARD_ABUSE__ENABLED=perhaps", "abuse.enabled", "true or false", ErrInvalid},
		{"bad CIDR in list", "KAFKAGUARD_ABUSE__ALLOW=10.0.0.0/8,1.2.3.4/40", "abuse.allow[1]", "(from KAFKAGUARD_ABUSE__ALLOW)", ErrInvalid},
		{"bad rate", "KAFKAGUARD_ABUSE__CONNECTION_RATE_PER_IP=lots", "abuse.connection_rate_per_ip", "invalid rate", ErrInvalidRate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load("", []string{tt.env})
			wantProblem(t, err, tt.key, tt.want)
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Fatalf("error %v does not match %v", err, tt.sentinel)
			}
		})
	}
}

func TestEnvUnknownAPINameReachesValidate(t *testing.T) {
	cfg, err := Load(writeFile(t, briefExample), []string{"KAFKAGUARD_LIMITS__API__METADTA=1KiB"})
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, cfg.Validate(), "limits.api.metadta", "did you mean Metadata?")
}

func TestEnvReportsAllProblems(t *testing.T) {
	_, err := Load("", []string{
		"KAFKAGUARD_NOPE=1",
		"KAFKAGUARD_LOG__LEVLE=debug",
		"KAFKAGUARD_POOL__WAIT=soon",
	})
	wantProblem(t, err, "nope", "unknown key")
	wantProblem(t, err, "log.levle", "did you mean level?")
	wantProblem(t, err, "pool.wait", "invalid duration")
}
