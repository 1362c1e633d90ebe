package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafkaguard/kafkaguard/cmd/internal/app"
	"github.com/kafkaguard/kafkaguard/config"
)

// demoPorts are where the demo's listeners go, one per in-process broker.
var demoPorts = []int{9092, 9093, 9094}

// runDemo starts a 3-broker kfake cluster on loopback and kafkaguard in
// front of it, with the default limits, until SIGINT or SIGTERM.
func runDemo(stdout io.Writer) error {
	// Before anything starts or prints: a banner that promises ports the demo cannot have sends
	// people to the wrong process.
	if err := checkPorts(demoAddrs(demoConfig(make([]string, len(demoPorts))))); err != nil {
		return err
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(len(demoPorts)), kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(3))
	if err != nil {
		return fmt.Errorf("demo: start in-process cluster: %w", err)
	}
	defer cluster.Close()

	cfg := demoConfig(cluster.ListenAddrs())
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	log, err := app.NewLogger(cfg.Log, os.Stderr)
	if err != nil {
		return err
	}
	a, err := app.Build(cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `kafkaguard demo: 3 in-process brokers behind kafkaguard
  listeners  127.0.0.1:9092 127.0.0.1:9093 127.0.0.1:9094  (upstreams %v)
  admin      http://%s/  (status page)  /metrics  /healthz  /readyz  /bans
  limits     max_request_bytes %s, max_client_id_bytes %d

try it with kcat:
  echo hello | kcat -P -b 127.0.0.1:9092 -t demo
  kcat -C -b 127.0.0.1:9092 -t demo -e
  kcat -L -b 127.0.0.1:9092                   # only kafkaguard addresses
  head -c 2000000 /dev/urandom | base64 -w0 | kcat -P -b 127.0.0.1:9092 -t demo -X message.max.bytes=5000000
                                              # refused: MESSAGE_TOO_LARGE
  curl -s 127.0.0.1:9644/metrics | grep kafkaguard_frames

Ctrl-C stops it.
`, cluster.ListenAddrs(), cfg.Admin.Address, cfg.Limits.MaxRequestBytes, cfg.Limits.MaxClientIDBytes)
	return serveUntilSignal(a, cfg.Timeouts.Shutdown)
}

func demoConfig(upstreams []string) config.Config {
	cfg := config.Default()
	cfg.Log.Format = "console"
	for i, up := range upstreams {
		cfg.Listeners = append(cfg.Listeners, config.Listener{
			Address: fmt.Sprintf("127.0.0.1:%d", demoPorts[i]), Upstream: up,
		})
	}
	return cfg
}

// demoAddrs lists every address cfg listens on: the listeners and the admin address.
func demoAddrs(cfg config.Config) []string {
	var addrs []string
	for _, l := range cfg.Listeners {
		addrs = append(addrs, l.Address)
	}
	if cfg.Admin.Address != "" {
		addrs = append(addrs, cfg.Admin.Address)
	}
	return addrs
}

// checkPorts binds each address for a moment and names every one in the way, with the error.
func checkPorts(addrs []string) error {
	var taken []string
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			taken = append(taken, fmt.Sprintf("  %s: %v", addr, err))
			continue
		}
		ln.Close()
	}
	if len(taken) == 0 {
		return nil
	}
	return fmt.Errorf("demo: cannot listen on every port it needs:\n%s\n"+
		"another demo or a broker may hold them (ss -ltnp names the process); stop it and try again",
		strings.Join(taken, "\n"))
}
