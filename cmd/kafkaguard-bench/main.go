// Command kafkaguard-bench measures what kafkaguard costs. It drives one
// Kafka upstream three ways in alternating rounds (A direct, B through
// kafkaguard, C through a plain byte relay) so machine drift cancels, runs
// hostile workloads against kafkaguard, and prints a markdown table of
// medians and ratios plus PNG charts.
//
// kafkaguard runs as the binary that ships: the bench builds the main
// module's ./cmd/kafkaguard (or takes --kafkaguard), starts it with a config
// file and reads its figures from the admin server's /metrics. The relay
// runs as this binary re-executed in a child mode. Both are processes of
// their own, so /proc/PID gives their own RSS and CPU seconds; the clients
// and the in-process kfake cluster share the parent process.
//
// The bench is a module of its own (its charts need gonum plot, which the
// product must not carry). Usage, from cmd/kafkaguard-bench:
//
//	go run .                 # full run, about 6 minutes on 2 cores
//	go run . --quick         # 1-2 minute smoke run
//	go run . --workloads produce-1k,produce-64k --cpuprofile bench-out/prof
//	go run . --splice-sf --workloads produce-1k,produce-64k,fetch
//	go run . --pin --producers 1,4,16 --workloads produce-1k,produce-64k,fetch
//	go run . --tls --pin    # TLS: kafkaguard against a TLS-terminating relay
//	go run . --pin --peer 'kafka-proxy server --bootstrap-server-mapping "{upstream},{listen}"'
//	go run . --pin --cpu-quota 0.25 --producers 1,4,16 --workloads produce-1k,produce-64k,fetch
//
// --pin puts the proxy under test on cores of its own (issue 14: measure the
// proxy, not the machine), so the report's CPU seconds per GiB of each
// proxy against the relay's are the proxy's own cost. --cpu-quota caps each
// proxy at a fraction of a CPU (quota.go), so the proxy is the bottleneck
// even on 2 cores and its throughput against the relay's is its efficiency. --peer adds path E,
// any other proxy's command line. --splice-sf adds path D, a prototype store-and-forward relay that keeps
// frame bodies in the kernel (splice through a pipe): a yardstick for what
// kafkaguard's store-and-forward could reach, not part of kafkaguard.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Workload names accepted by --workloads.
const (
	wProduce1K  = "produce-1k"
	wProduce64K = "produce-64k"
	wLatency    = "latency"
	wFetch      = "fetch"
	wTrickle    = "trickle-1g"
	wSlow       = "slow-frames"
	wFlood      = "flood"
	wIdle       = "idle"
	wIdleSilent = "idle-silent"
	wMany       = "many-producers"
)

// allWorkloads run by default; wMany (a minute of setup for 1000 clients a
// path) and wIdleSilent only when named.
var allWorkloads = []string{wProduce1K, wProduce64K, wLatency, wFetch, wTrickle, wSlow, wFlood, wIdle}

// knownWorkloads are the names --workloads accepts.
var knownWorkloads = append(append([]string(nil), allWorkloads...), wMany, wIdleSilent)

// settings are the parsed flags.
type settings struct {
	rounds        int
	duration      time.Duration // one round of one throughput/latency workload on one path
	workloads     []string
	out           string
	quick         bool
	upstream      string
	cpuprofile    string // directory for kafkaguard-side profiles; empty = none
	conns         int    // connections per hostile workload
	rate          int    // records/s of the latency workload
	latBytes      int    // record size of the latency workload
	attack        time.Duration
	goodRate      int // records/s of the well-behaved client during attacks
	floodIPs      int
	floodConns    int // concurrent flood dialers
	spliceSF      bool
	guardBin      string  // a kafkaguard binary; empty = go build the main module's ./cmd/kafkaguard
	pin           bool    // proxies on cores of their own, clients and kfake on the others
	cpuQuota      float64 // each proxy capped at this fraction of a CPU (cgroup); 0 = no cap
	peer          string  // another proxy's command line, path E
	producers     []int   // producer counts the produce workloads sweep
	idleConns     int     // connections of the idle workload; 0 = conns
	manyProducers int     // producers of the many-producers workload
	tls           bool    // clients speak TLS to B and C; C is the TLS-terminating relay
}

func main() {
	raiseFileLimit(1 << 16)
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	s, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, s, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kafkaguard-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (settings, error) {
	var s settings
	fs := flag.NewFlagSet("kafkaguard-bench", flag.ContinueOnError)
	fs.IntVar(&s.rounds, "rounds", 5, "alternating A,B,C rounds per workload")
	fs.DurationVar(&s.duration, "duration", 3*time.Second, "length of one round on one path")
	wl := fs.String("workloads", strings.Join(allWorkloads, ","), "comma list of workloads: "+strings.Join(knownWorkloads, ", "))
	fs.StringVar(&s.out, "out", "bench-out", "directory for charts, child logs and profiles")
	fs.BoolVar(&s.quick, "quick", false, "smoke mode: 1 round, 1s rounds, 200 hostile connections")
	fs.StringVar(&s.upstream, "upstream", "", "host:port of a real broker (single broker); empty starts kfake in-process")
	fs.StringVar(&s.cpuprofile, "cpuprofile", "", "directory: write kafkaguard's CPU and alloc profiles per workload there")
	fs.IntVar(&s.conns, "conns", 1000, "connections per hostile workload")
	fs.IntVar(&s.rate, "rate", 5000, "records/s of the fixed-rate latency workload")
	fs.IntVar(&s.latBytes, "latency-bytes", 1024, "record size of the latency workload")
	fs.DurationVar(&s.attack, "attack", 8*time.Second, "length of each hostile workload")
	fs.IntVar(&s.goodRate, "good-rate", 1000, "records/s of the well-behaved client measured during attacks")
	fs.IntVar(&s.floodIPs, "flood-ips", 64, "source addresses (127.3.0.0/16) the reconnect flood cycles through")
	fs.IntVar(&s.floodConns, "flood-workers", 32, "concurrent dialers of the reconnect flood")
	fs.BoolVar(&s.spliceSF, "splice-sf", false, "also measure path D, a prototype store-and-forward relay that keeps bodies in the kernel (splice via a pipe)")
	fs.StringVar(&s.guardBin, "kafkaguard", "", "kafkaguard binary to measure; empty builds ./cmd/kafkaguard of the repository around the working directory")
	fs.BoolVar(&s.pin, "pin", false, "pin the proxy under test to the upper half of the CPUs and the bench (clients, kfake) to the rest (taskset); on 2 CPUs one each")
	fs.Float64Var(&s.cpuQuota, "cpu-quota", 0, "cap each proxy under test at this fraction of one CPU (a CPU cgroup each; needs root), so the proxy, not the clients, is the bottleneck: throughput is then CPU efficiency, e.g. 0.25; 0 = no cap")
	fs.StringVar(&s.peer, "peer", "", "command line of another proxy to measure as path E, run by sh; {listen} and {upstream} are replaced by host:port")
	fs.BoolVar(&s.tls, "tls", false, "clients speak TLS to kafkaguard (B) and to a minimal TLS-terminating relay (C) instead of the plain one; produce, fetch and latency workloads only")
	fs.IntVar(&s.idleConns, "idle-conns", 0, "connections of the idle workload (e.g. 10000); 0 = --conns")
	fs.IntVar(&s.manyProducers, "many-producers", 1000, "producers of the many-producers workload, each a client from a source address of its own")
	prods := fs.String("producers", "1", "comma list of producer counts for the produce workloads, e.g. 1,4,16")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if s.quick {
		if !set["rounds"] {
			s.rounds = 1
		}
		if !set["duration"] {
			s.duration = time.Second
		}
		if !set["conns"] {
			s.conns = 200
		}
		if !set["attack"] {
			s.attack = 3 * time.Second
		}
	}
	for _, w := range strings.Split(*wl, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		if !slices.Contains(knownWorkloads, w) {
			return s, fmt.Errorf("unknown workload %q (want one of %s)", w, strings.Join(knownWorkloads, ", "))
		}
		s.workloads = append(s.workloads, w)
	}
	for _, f := range strings.Split(*prods, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 64 {
			return s, fmt.Errorf("--producers %q: want counts 1..64", *prods)
		}
		s.producers = append(s.producers, n)
	}
	if s.tls {
		if !set["workloads"] {
			s.workloads = []string{wProduce1K, wProduce64K, wFetch}
		}
		for _, w := range s.workloads {
			if w != wProduce1K && w != wProduce64K && w != wFetch && w != wLatency {
				return s, fmt.Errorf("--tls measures produce-1k, produce-64k, fetch and latency, not %s (its raw-socket clients speak no TLS)", w)
			}
		}
		if s.spliceSF || s.peer != "" {
			return s, fmt.Errorf("--tls compares kafkaguard with the TLS relay only: drop --splice-sf and --peer")
		}
	}
	if s.peer != "" && (!strings.Contains(s.peer, "{listen}") || !strings.Contains(s.peer, "{upstream}")) {
		return s, fmt.Errorf("--peer %q: want a command line with {listen} and {upstream}", s.peer)
	}
	switch {
	case s.rounds < 1 || s.rounds > 100:
		return s, fmt.Errorf("--rounds %d: want 1..100", s.rounds)
	case s.duration < 100*time.Millisecond || s.duration > 5*time.Minute:
		return s, fmt.Errorf("--duration %v: want 100ms..5m", s.duration)
	case s.conns < 1 || s.conns > 16000:
		return s, fmt.Errorf("--conns %d: want 1..16000", s.conns)
	case s.rate < 1 || s.rate > 200000:
		return s, fmt.Errorf("--rate %d: want 1..200000", s.rate)
	case s.attack < time.Second || s.attack > 5*time.Minute:
		return s, fmt.Errorf("--attack %v: want 1s..5m", s.attack)
	case s.floodIPs < 1 || s.floodIPs > 250 || s.floodConns < 1 || s.floodConns > 1000:
		return s, fmt.Errorf("--flood-ips 1..250 and --flood-workers 1..1000")
	case s.goodRate < 1 || s.goodRate > 100000:
		return s, fmt.Errorf("--good-rate %d: want 1..100000", s.goodRate)
	}
	return s, nil
}
