package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.yaml.in/yaml/v3"

	"github.com/kafkaguard/kafkaguard/cmd/internal/app"
	"github.com/kafkaguard/kafkaguard/config"
)

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"version"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "kafkaguard dev") {
		t.Errorf("version printed %q", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"run"}, {"validate", "--config"}} {
		err := run(args, io.Discard, io.Discard)
		var ec *exitCode
		if !errors.As(err, &ec) || ec.code != 2 {
			t.Errorf("run(%q) = %v, want exit code 2", args, err)
		}
	}
}

// validate prints every problem of a bad file at once and exits 2.
func TestValidateListsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte(`
listeners:
  - address: 127.0.0.1:9092
    upstream: 127.0.0.1:19092
  - address: 127.0.0.1:9092
    upstream: nowhere
limits:
  max_request_bytes: 12XB
  api: {Metadta: 64KiB}
pool: {chunk_bytes: 32KiB, total_bytes: 64MiB, wiat: 5s}
`), 0o600)
	err := run([]string{"validate", "--config", path}, io.Discard, io.Discard)
	var ec *exitCode
	if !errors.As(err, &ec) || ec.code != 2 {
		t.Fatalf("validate = %v, want exit code 2", err)
	}
	for _, want := range []string{"listeners[1].address", "listeners[1].upstream", "limits.max_request_bytes",
		"limits.api.Metadta", "pool.wiat"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validate output does not name %s:\n%v", want, err)
		}
	}
}

// The shipped example configs, including the one inside the Kubernetes
// manifest, are valid: the docs cannot drift from the code.
func TestShippedConfigsValidate(t *testing.T) {
	if err := run([]string{"validate", "--config", "../../deploy/kafkaguard.yaml"}, io.Discard, io.Discard); err != nil {
		t.Errorf("deploy/kafkaguard.yaml: %v", err)
	}
	raw, err := os.ReadFile("../../deploy/kubernetes/kafka-with-kafkaguard.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	found := false
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if doc.Kind != "ConfigMap" {
			continue
		}
		found = true
		path := filepath.Join(t.TempDir(), "sidecar.yaml")
		os.WriteFile(path, []byte(withSecretFiles(t, doc.Data["kafkaguard.yaml"])), 0o600)
		if err := run([]string{"validate", "--config", path}, io.Discard, io.Discard); err != nil {
			t.Errorf("kubernetes ConfigMap kafkaguard.yaml: %v", err)
		}
	}
	if !found {
		t.Error("no ConfigMap in the kubernetes example")
	}
}

// The YAML, with its addresses moved to free loopback ports, runs in
// front of three brokers: produce, consume, rewritten metadata, admin
// endpoints, and /readyz going unready when the brokers go away.
func TestRunWithUserYAML(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ups := cluster.ListenAddrs()
	admin := freePort(t)
	yml := fmt.Sprintf(`
listeners:
  - {address: 0.0.0.0:0, upstream: %s}
  - {address: 0.0.0.0:0, upstream: %s}
  - {address: 0.0.0.0:0, upstream: %s}
admin:
  address: %s
limits:
  max_request_bytes: 1MiB
  api: {Metadata: 64KiB}
  max_client_id_bytes: 256
timeouts: {header: 10s, frame: 30s, idle: 10m, dial: 5s}
pool: {chunk_bytes: 32KiB, total_bytes: 64MiB, wait: 5s}
log: {level: warn, format: json}
`, ups[0], ups[1], ups[2], admin)
	path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
	os.WriteFile(path, []byte(yml), 0o600)
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Build(cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			a.Stop()
		}
	}()
	var addrs []string
	for _, ad := range a.Server().Addrs() {
		_, port, _ := net.SplitHostPort(ad.String())
		addrs = append(addrs, "127.0.0.1:"+port)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs[2]), kgo.DefaultProduceTopic("yaml"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 50 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(strconv.Itoa(i))).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	md, err := kmsg.NewPtrMetadataRequest().RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range md.Brokers {
		hp := net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
		if !contains(addrs, hp) {
			t.Errorf("metadata advertises %s; kafkaguard listens on %v", hp, addrs)
		}
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(addrs[0]), kgo.ConsumeTopics("yaml"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	got := 0
	for got < 50 {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of 50", got)
		}
		got += fs.NumRecords()
	}

	body := httpGet(t, "http://"+admin+"/metrics", 200)
	for _, want := range []string{`kafkaguard_frames_forwarded_total{api="Produce"}`, "kafkaguard_connections_active",
		"kafkaguard_pool_bytes_in_use", `kafkaguard_bytes_total{direction="client_to_upstream"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	httpGet(t, "http://"+admin+"/healthz", 200)
	httpGet(t, "http://"+admin+"/readyz", 200)
	cluster.Close()
	httpGet(t, "http://"+admin+"/readyz", 503)

	stopped = true
	if err := a.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addrs[0], time.Second); err == nil {
		t.Error("listener still open after stop")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpGet(t *testing.T, url string, want int) string {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d: %s", url, resp.StatusCode, want, b)
	}
	return string(b)
}

// demoConfig must stay valid: `kafkaguard demo` depends on it.
func TestDemoConfigValid(t *testing.T) {
	cfg := demoConfig([]string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Listeners[0].Address != "127.0.0.1:9092" || len(cfg.Listeners) != 3 {
		t.Errorf("demo listeners %+v", cfg.Listeners)
	}
	_ = config.Default()
}

// `kafkaguard demo` checks its ports before its banner: with one taken it prints no banner, names the
// port and the error, and fails.
func TestDemoNamesPortInTheWay(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, port, _ := net.SplitHostPort(taken.Addr().String())
	old := demoPorts
	defer func() { demoPorts = old }()
	demoPorts = nil
	for range 2 { // two ports free now, for the other listeners
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		demoPorts = append(demoPorts, ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	}
	p, _ := strconv.Atoi(port)
	demoPorts = append([]int{p}, demoPorts...)

	var stdout bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- run([]string{"demo"}, &stdout, io.Discard) }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not return with its port taken")
	}
	if err == nil {
		t.Fatal("demo succeeded with its port taken")
	}
	if stdout.Len() != 0 {
		t.Errorf("demo printed its banner with its port taken:\n%s", stdout.String())
	}
	for _, want := range []string{"127.0.0.1:" + port, "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
}
