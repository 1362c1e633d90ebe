package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the relay child processes the
// bench re-executes itself as.
func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	os.Exit(m.Run())
}

// quickRun runs the bench with args, within two minutes, and returns its
// results and report; a flag or run error ends the test.
func quickRun(t *testing.T, args ...string) (*bench, *bytes.Buffer) {
	t.Helper()
	s, err := parseFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	b, err := run(ctx, s, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return b, &out
}

func TestQuickProduce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kfake, kafkaguard and a relay and drives load for seconds")
	}
	b, out := quickRun(t, "--quick", "--workloads", wProduce1K, "--duration", "700ms", "--out", t.TempDir())
	if len(b.rows) != 1 {
		t.Fatalf("got %d result rows, want 1", len(b.rows))
	}
	r := b.rows[0]
	if len(b.targets) != 3 {
		t.Fatalf("measured %d paths, want A, B, C", len(b.targets))
	}
	for p := range b.targets {
		if len(r.vals[p]) != 1 || !(r.vals[p][0] > 0) {
			t.Errorf("%s: throughput %v, want one positive figure", pathNames[p], r.vals[p])
		}
	}
	if !(median(r.cpu[pathB]) > 0) {
		t.Errorf("kafkaguard CPU seconds %v, want positive", r.cpu[pathB])
	}
	if !(r.peakMiB > 0) {
		t.Errorf("kafkaguard peak RSS %v MiB, want positive", r.peakMiB)
	}
	if !strings.Contains(out.String(), "| produce-1k | throughput (MiB/s) |") {
		t.Errorf("report lacks the produce-1k row:\n%s", out.String())
	}
}

// --tls: the clients produce and fetch over TLS through kafkaguard and the
// TLS-terminating relay, and the report says so.
func TestQuickTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kfake, kafkaguard and a TLS relay and drives load for seconds")
	}
	dir := t.TempDir()
	b, out := quickRun(t, "--quick", "--tls", "--workloads", wProduce1K+","+wFetch, "--duration", "700ms", "--out", dir)
	if len(b.rows) != 2 {
		t.Fatalf("got %d result rows, want 2", len(b.rows))
	}
	for _, r := range b.rows {
		for p := range b.targets {
			if len(r.vals[p]) != 1 || !(r.vals[p][0] > 0) || r.errs[p] != 0 {
				t.Errorf("%s %s: throughput %v, %d errors: want one positive figure, no errors", r.workload, pathNames[p], r.vals[p], r.errs[p])
			}
		}
	}
	if !strings.Contains(out.String(), "--tls: clients speak TLS") {
		t.Errorf("report does not say the run was over TLS:\n%s", out.String())
	}
	logs, err := os.ReadFile(filepath.Join(dir, "kafkaguard.log"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logs), "tls_handshake") || strings.Contains(string(logs), "plaintext_on_tls") {
		t.Errorf("kafkaguard refused the bench's TLS clients:\n%s", logs)
	}
}

// A slow-frames attack and idle connections against the built kafkaguard:
// the pool's high water comes from /metrics (a fresh process per attack),
// and the idle figures need POST /debug/free-os-memory on both kafkaguard
// and the relay.
func TestQuickHostileAndIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kfake, kafkaguard and a relay and drives load for seconds")
	}
	b, out := quickRun(t, "--quick", "--workloads", wSlow+","+wIdle, "--attack", "1s", "--conns", "20",
		"--good-rate", "200", "--out", t.TempDir())
	if len(b.hostiles) != 1 || len(b.idle) != 2 {
		t.Fatalf("got %d attacks and %d idle rows, want 1 and 2:\n%s", len(b.hostiles), len(b.idle), out.String())
	}
	h := b.hostiles[0]
	// 20 connections each send 4 KiB every 100 ms of a frame that never
	// completes: kafkaguard holds at least a chunk for each.
	if !(h.poolHighWater > 0) || !(h.peakRSS > 0) {
		t.Errorf("slow frames: pool high water %v MiB, peak RSS %v MiB, want both positive", h.poolHighWater, h.peakRSS)
	}
	if h.goodSent == 0 || h.goodErrs != 0 {
		t.Errorf("well-behaved client: %d errors of %d sent", h.goodErrs, h.goodSent)
	}
	for _, r := range b.idle {
		if r.conns != 20 {
			t.Errorf("%s: %d idle connections completed ApiVersions, want 20", r.path, r.conns)
		}
	}
	if b.kgRuns != 2 {
		t.Errorf("started kafkaguard %d times, want 2 (once, then afresh for the attack)", b.kgRuns)
	}
}

// --pin, a sweep of 1 and 2 producers and a --peer (the relay run as a
// peer): every proxy path gets figures, and the CPU per GiB table has a
// row per produce workload.
func TestQuickPinnedPeerSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kfake, kafkaguard, a relay and a peer and drives load for seconds")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	peer := "env " + childModeEnv + "=" + modePeerRelay + " " + childUpstreamEnv + "={upstream} " + childListenEnv + "={listen} " + exe
	b, out := quickRun(t, "--quick", "--pin", "--producers", "1,2", "--peer", peer,
		"--workloads", wProduce1K, "--duration", "500ms", "--out", t.TempDir())
	if len(b.rows) != 2 {
		t.Fatalf("got %d rows, want produce-1k with 1 and 2 producers:\n%s", len(b.rows), out.String())
	}
	for _, r := range b.rows {
		for _, p := range []int{pathB, pathC, pathE} {
			if !(median(r.vals[p]) > 0) || !(r.cpuPerGiB(p) > 0) {
				t.Errorf("%s, %s: throughput %v, CPU s/GiB %v, want both positive", r.workload, pathNames[p], r.vals[p], r.cpuPerGiB(p))
			}
		}
	}
	for _, want := range []string{"| produce-1k ×2 producers | throughput (MiB/s) |", "| E peer | E/C | E CPU s/round |",
		"E peer CPU s/GiB", "pinned: proxies on CPU"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCoreSplit(t *testing.T) {
	tests := []struct {
		n              int
		clients, proxy string
	}{{1, "", ""}, {2, "0", "1"}, {3, "0", "1-2"}, {16, "0-7", "8-15"}}
	for _, tt := range tests {
		if c, p := coreSplit(tt.n); c != tt.clients || p != tt.proxy {
			t.Errorf("coreSplit(%d) = %q, %q, want %q, %q", tt.n, c, p, tt.clients, tt.proxy)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics(`# HELP kafkaguard_pool_bytes_high_water Most pooled bytes ever held at once.
# TYPE kafkaguard_pool_bytes_high_water gauge
kafkaguard_pool_bytes_high_water 1.048576e+06
kafkaguard_connections_closed_total{reason="too_large",side="client"} 3
go_gc_duration_seconds{quantile="0.5"} NaN
broken
`)
	tests := []struct {
		series string
		want   float64
	}{
		{"kafkaguard_pool_bytes_high_water", 1 << 20},
		{`kafkaguard_connections_closed_total{reason="too_large",side="client"}`, 3},
	}
	for _, tt := range tests {
		if got, ok := m[tt.series]; !ok || got != tt.want {
			t.Errorf("%s = %v (present %v), want %v", tt.series, got, ok, tt.want)
		}
	}
	if _, ok := m["broken"]; ok {
		t.Error("a line without a value was read")
	}
}

func TestMainModuleRoot(t *testing.T) {
	root, err := mainModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "kafkaguard", "main.go")); err != nil {
		t.Errorf("root %s has no cmd/kafkaguard: %v", root, err)
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(settings) bool
	}{
		{"defaults", nil, false, func(s settings) bool { return s.rounds == 5 && len(s.workloads) == len(allWorkloads) }},
		{"quick", []string{"--quick"}, false, func(s settings) bool { return s.rounds == 1 && s.duration == time.Second && s.conns == 200 }},
		{"quick keeps explicit rounds", []string{"--quick", "--rounds", "3"}, false, func(s settings) bool { return s.rounds == 3 }},
		{"workload list", []string{"--workloads", "fetch, idle"}, false, func(s settings) bool {
			return len(s.workloads) == 2 && s.workloads[0] == wFetch && s.workloads[1] == wIdle
		}},
		{"unknown workload", []string{"--workloads", "nope"}, true, nil},
		{"producer sweep", []string{"--producers", "1, 4,16"}, false, func(s settings) bool {
			return slices.Equal(s.producers, []int{1, 4, 16})
		}},
		{"default one producer", nil, false, func(s settings) bool { return slices.Equal(s.producers, []int{1}) }},
		{"zero producers", []string{"--producers", "0"}, true, nil},
		{"peer without placeholders", []string{"--peer", "kafka-proxy server"}, true, nil},
		{"peer", []string{"--peer", "p --from {listen} --to {upstream}"}, false, func(s settings) bool { return s.peer != "" }},
		{"zero rounds", []string{"--rounds", "0"}, true, nil},
		{"tls defaults to produce and fetch", []string{"--tls"}, false, func(s settings) bool {
			return s.tls && slices.Equal(s.workloads, []string{wProduce1K, wProduce64K, wFetch})
		}},
		{"tls with an attack", []string{"--tls", "--workloads", "flood"}, true, nil},
		{"tls with a peer", []string{"--tls", "--peer", "p {listen} {upstream}"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && !tt.check(s) {
				t.Errorf("settings %+v do not match", s)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	s := make([]time.Duration, 1000)
	for i := range s {
		s[i] = time.Duration(i+1) * time.Microsecond
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}, {1, 1000 * time.Microsecond}}
	for _, tt := range tests {
		if got := percentile(s, tt.q); got != tt.want {
			t.Errorf("percentile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

// The many-producers workload with a few producers, and the idle and
// idle-silent workloads sized by --idle-conns: each path gets a row with
// every producer served and every connection made.
func TestQuickManyProducersAndIdleConns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kfake, kafkaguard and a relay and drives load for seconds")
	}
	b, out := quickRun(t, "--quick", "--workloads", wMany+","+wIdle+","+wIdleSilent, "--many-producers", "12",
		"--idle-conns", "30", "--conns", "5", "--out", t.TempDir())
	if len(b.many) != 2 || len(b.idle) != 4 {
		t.Fatalf("got %d many-producer rows and %d idle rows, want 2 and 4:\n%s", len(b.many), len(b.idle), out.String())
	}
	for _, r := range b.many {
		if r.producers != 12 || r.errs != 0 || !(r.mibps > 0) || r.p99 <= 0 {
			t.Errorf("%s: %d producers, %d errors, %.2f MiB/s, p99 %v", r.path, r.producers, r.errs, r.mibps, r.p99)
		}
	}
	for _, r := range b.idle {
		if r.conns != 30 {
			t.Errorf("%s: %d idle connections, want 30 (--idle-conns)", r.path, r.conns)
		}
	}
	if !strings.Contains(out.String(), "| silent connections") || !b.idle[2].silent || b.idle[1].silent {
		t.Errorf("no silent-connections rows after the idle ones:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "| many producers") {
		t.Errorf("no many-producers table:\n%s", out.String())
	}
}

// --cpu-quota runs each proxy in a CPU cgroup of its own capped at the
// fraction asked: no round may use more CPU than the cap allows (the
// kernel's CFS quota is strict, so the bound has only measuring slack),
// and the report says the proxies were capped. The cap, 5% of a CPU, is
// below what the relay takes uncapped in these rounds (about 15%), so a
// proxy that escaped its cgroup fails the bound.
func TestQuickCPUQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kfake, kafkaguard and a relay and drives load for seconds")
	}
	const fraction, round = 0.05, 800 * time.Millisecond
	probe, err := newCPUCgroups(fraction)
	if errors.Is(err, errNoCgroup) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	probe.remove()
	b, out := quickRun(t, "--quick", "--cpu-quota", fmt.Sprint(fraction), "--workloads", wProduce1K,
		"--duration", round.String(), "--out", t.TempDir())
	if !strings.Contains(out.String(), "each proxy capped at 0.05 of a CPU") {
		t.Errorf("report does not say the proxies were capped:\n%s", out.String())
	}
	for _, r := range b.rows {
		for _, p := range []int{pathB, pathC} {
			if len(r.cpu[p]) == 0 || !(median(r.vals[p]) > 0) {
				t.Errorf("%s, %s: no figures (throughput %v)", r.workload, pathNames[p], r.vals[p])
			}
			for _, c := range r.cpu[p] {
				if limit := 1.5*fraction*round.Seconds() + 0.02; c > limit {
					t.Errorf("%s, %s: %.3f CPU s in a %v round, over the cap's %.3f", r.workload, pathNames[p], c, round, limit)
				}
			}
		}
	}
}

func TestCPUQuotaWrap(t *testing.T) {
	var g *cpuCgroups
	if argv, err := g.wrap([]string{"taskset", "-c", "1", "relay"}); err != nil || strings.Join(argv, " ") != "taskset -c 1 relay" {
		t.Errorf("no quota: wrap = %q, %v; want the command unchanged", argv, err)
	}
	if _, err := newCPUCgroups(0.001); err == nil || errors.Is(err, errNoCgroup) {
		t.Errorf("--cpu-quota 0.001: err = %v, want a range error", err)
	}
}
