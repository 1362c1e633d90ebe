package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/kafkaguard/kafkaguard/proxy/tlstest"
)

// A real Prometheus (Debian's prometheus package) scrapes a real kafkaguard
// every second while hostile clients hit it, and evaluates the shipped alert
// rules every second. Through Prometheus's HTTP API the test checks that
// every query of the Grafana dashboard returns series, that the rejections
// alert fires, and that every metric name the dashboard and the rules use is
// in kafkaguard's /metrics.
//
// The rules are the shipped file with one override: every for: is set to
// promFor, so an alert the load makes true fires within seconds instead of
// minutes. Expressions and thresholds are the shipped ones.
const promFor = "5s"

// promDeadline bounds the hostile load and the wait for the alert together.
const promDeadline = 60 * time.Second

func TestPrometheusScrapesHostileLoad(t *testing.T) {
	requireE2E(t)
	promBin := requireTool(t, "prometheus", "prometheus")

	// The broker speaks TLS, so the certificate-expiry panel has series
	// (the clients below speak plaintext to kafkaguard).
	certs := tlstest.New(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "prom-e2e"), kfake.TLS(certs.ServerConfig()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g := startTLSGuard(t, c.ListenAddrs(), tlsSides{upstream: fmt.Sprintf("{ca_file: %s}", certs.CAFile)})
	p := startPrometheus(t, promBin, g.admin)

	if !eventually(30*time.Second, 250*time.Millisecond, func() bool {
		r, err := p.query(`up{job="kafkaguard"} == 1`)
		return err == nil && len(r) == 1
	}) {
		t.Fatalf("Prometheus never scraped kafkaguard at %s\n%s", g.admin, p.logTail(30))
	}

	ctx, cancel := context.WithTimeout(context.Background(), promDeadline)
	defer cancel()
	start := time.Now()
	load := &promLoad{addr: g.addrs[0]}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); load.good(ctx, t, g.addrs) }()
	for w := range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); load.hostile(ctx, w) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); load.banBurst(ctx) }()
	stopLoad := func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("load goroutines did not stop within 30s of the deadline")
		}
	}
	defer stopLoad()

	// The rejections alert must fire, and every dashboard query return
	// series, within the deadline; the load runs until both hold.
	queries := dashboardQueries(t)
	var firedAt time.Duration
	var empty []string
	var lastErr error
	for ctx.Err() == nil {
		if firedAt == 0 {
			if ok, err := p.alertFiring("KafkaguardRejectionsSpike"); err != nil {
				lastErr = err
			} else if ok {
				firedAt = time.Since(start)
			}
		}
		empty = empty[:0]
		for _, q := range queries {
			r, err := p.dashboardQuery(q.expr)
			if err != nil {
				t.Fatalf("dashboard panel %q: query %q: %v", q.panel, q.expr, err)
			}
			if len(r) == 0 {
				empty = append(empty, fmt.Sprintf("%s: %s", q.panel, q.expr))
			}
		}
		if firedAt > 0 && len(empty) == 0 {
			break
		}
		soakSleep(ctx, time.Second)
	}
	elapsed := time.Since(start)
	stopLoad()
	counts := load.counts()
	fired := "never"
	if firedAt > 0 {
		fired = "after " + firedAt.Round(100*time.Millisecond).String()
	}
	t.Logf("FIGURES prometheus: rejections alert firing %s of load (for: %s); %d dashboard queries, %d without series, after %v; load: %s",
		fired, promFor, len(queries), len(empty), elapsed.Round(100*time.Millisecond), counts)

	if firedAt == 0 {
		alerts, _ := p.get("/api/v1/alerts")
		rate, _ := p.query(`sum by (job, instance) (rate(kafkaguard_frames_rejected_total[5m]))`)
		var rs []string
		for _, r := range rate {
			rs = append(rs, string(r))
		}
		t.Errorf("KafkaguardRejectionsSpike did not fire within %v (last error %v); rejections rate %v; alerts %s",
			promDeadline, lastErr, rs, alerts)
	}
	for _, e := range empty {
		t.Errorf("dashboard query returned no series: %s", e)
	}
	if load.hostileConns.Load() == 0 || load.answered.Load() == 0 || load.produced.Load() == 0 {
		t.Errorf("the load did not run as planned: %s", counts)
	}
	for _, q := range []string{`kafkaguard_bans_total > 0`, `kafkaguard_connections_refused_total{reason="banned"} > 0`} {
		if r, err := p.query(q); err != nil || len(r) == 0 {
			t.Errorf("Prometheus: %s: no series (%v): the reconnect burst was not banned", q, err)
		}
	}

	// Every name the dashboard and the rules use is in /metrics now.
	code, body, err := httpGet("http://" + g.admin + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	exported := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		exported[name] = true
	}
	var missing []string
	for name, where := range usedMetricNames(t) {
		if !exported[name] && !exported[histogramBase(name)+"_count"] {
			missing = append(missing, name+" ("+where+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("kafkaguard's /metrics after the load has no %s", m)
	}
}

// grafanaToPromQL replaces the dashboard's variables with what Grafana would
// send for "All" and a 1 s scrape interval.
func grafanaToPromQL(expr string) string {
	return strings.NewReplacer(
		`"$job"`, `".+"`,
		`"$instance"`, `".+"`,
		"$__rate_interval", "15s",
	).Replace(expr)
}

// dashboardQuery runs one dashboard query as Grafana would: a variable's
// label_values(SELECTOR, LABEL) through the label values API, a panel's
// expression as an instant query.
func (p *prometheus) dashboardQuery(expr string) ([]json.RawMessage, error) {
	expr = grafanaToPromQL(expr)
	args, ok := strings.CutPrefix(expr, "label_values(")
	if !ok {
		return p.query(expr)
	}
	i := strings.LastIndex(args, ",")
	if i < 0 || !strings.HasSuffix(args, ")") {
		return nil, fmt.Errorf("cannot read %q as label_values(SELECTOR, LABEL)", expr)
	}
	sel, label := strings.TrimSpace(args[:i]), strings.TrimSpace(strings.TrimSuffix(args[i+1:], ")"))
	body, err := p.get("/api/v1/label/" + url.PathEscape(label) + "/values?match[]=" + url.QueryEscape(sel))
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string            `json:"status"`
		Data   []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		return nil, fmt.Errorf("label values of %q: %v %s", expr, err, body)
	}
	return r.Data, nil
}

// prometheus is a Prometheus server the test started, scraping one target.
type prometheus struct {
	base    string // http://127.0.0.1:PORT
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

// startPrometheus runs bin with a 1 s scrape and evaluation interval, the
// shipped rules (every for: set to promFor) and storage in a temporary
// directory, listening on a free loopback port; it waits for /-/ready and
// stops it by its pid (SIGTERM, then SIGKILL after 10 s) when the test ends.
func startPrometheus(t *testing.T, bin, target string) *prometheus {
	t.Helper()
	dir := t.TempDir()
	rules := loadRules(t)
	for gi := range rules.Groups {
		for ri := range rules.Groups[gi].Rules {
			rules.Groups[gi].Rules[ri].For = promFor
		}
	}
	raw, err := yaml.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	rulesPath := filepath.Join(dir, "kafkaguard-rules.yaml")
	if err := os.WriteFile(rulesPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: kafkaguard
    static_configs:
      - targets: [%q]
`, rulesPath, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := &prometheus{base: "http://" + addr, logPath: filepath.Join(dir, "prometheus.log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--storage.tsdb.retention.time=1h",
	)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
			t.Logf("Prometheus (pid %d) killed: no exit within 10s of SIGTERM", p.cmd.Process.Pid)
		}
	})
	ready := eventually(30*time.Second, 200*time.Millisecond, func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		code, _, err := httpGet(p.base + "/-/ready")
		return err == nil && code == http.StatusOK
	})
	select {
	case <-p.done:
		t.Fatalf("Prometheus exited at start\n%s", p.logTail(30))
	default:
	}
	if !ready {
		t.Fatalf("Prometheus not ready in 30s\n%s", p.logTail(30))
	}
	return p
}

func (p *prometheus) logTail(n int) string {
	raw, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	return tail(raw, n)
}

// get fetches a path of the HTTP API (bounded by httpGet's timeout).
func (p *prometheus) get(path string) (string, error) {
	code, body, err := httpGet(p.base + path)
	if err != nil {
		return "", err
	}
	if code != http.StatusOK {
		return "", fmt.Errorf("GET %s: %d %s", path, code, body)
	}
	return body, nil
}

// query runs an instant query and returns its result vector.
func (p *prometheus) query(q string) ([]json.RawMessage, error) {
	body, err := p.get("/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, r.Error)
	}
	return r.Data.Result, nil
}

// alertFiring says whether an alert of that name is firing now.
func (p *prometheus) alertFiring(name string) (bool, error) {
	body, err := p.get("/api/v1/alerts")
	if err != nil {
		return false, err
	}
	var r struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return false, err
	}
	for _, a := range r.Data.Alerts {
		if a.Labels["alertname"] == name && a.State == "firing" {
			return true, nil
		}
	}
	return false, nil
}

// promLoad is the test's traffic: a well-behaved producer (forwarded
// requests, rewritten Metadata), hostile one-shot connections from many
// source addresses (each used for fewer offences than a ban takes, so they
// keep reaching the frame checks) and one source that reconnects with bad
// frames until it is banned. Every dial, write and read has a deadline;
// everything stops when ctx ends.
type promLoad struct {
	addr         string
	hostileConns atomic.Int64
	answered     atomic.Int64
	burst        atomic.Int64
	produced     atomic.Int64
	produceErr   atomic.Pointer[error] // the first
	nextSource   atomic.Int64
}

func (l *promLoad) counts() string {
	s := fmt.Sprintf("%d hostile connections, %d oversized Produce answered, %d reconnects of the banned source, %d records produced",
		l.hostileConns.Load(), l.answered.Load(), l.burst.Load(), l.produced.Load())
	if err := l.produceErr.Load(); err != nil {
		s += fmt.Sprintf(" (first produce error: %v)", *err)
	}
	return s
}

// good produces a record every 200 ms through kafkaguard.
func (l *promLoad) good(ctx context.Context, t *testing.T, seeds []string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic("prom-e2e"),
		kgo.RecordRetries(3), kgo.ProduceRequestTimeout(5*time.Second))
	if err != nil {
		t.Errorf("kgo client: %v", err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := cl.ProduceSync(pctx, kgo.StringRecord("ok")).FirstErr(); err == nil {
			l.produced.Add(1)
		} else if l.produceErr.Load() == nil {
			l.produceErr.Store(&err)
		}
		cancel()
		soakSleep(ctx, 200*time.Millisecond)
	}
}

// hostile sends one bad payload per connection, at most 50 connections a
// second, from a fresh source address every three connections (under the 5
// offences a ban takes).
func (l *promLoad) hostile(ctx context.Context, worker int) {
	oversizedMeta := soakReqHeader(2<<20, 3, 0, 1, "prom-big") // Metadata over its 64 KiB limit: too_large
	malformed := binary.BigEndian.AppendUint32(nil, 12)
	malformed = append(malformed, 0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xf9, 0, 0) // client id length -7
	badSize := []byte{0, 0, 0, 2, 0, 0}
	produce := soakOversizedProduce(1, soakMaxRequest+50<<10) // answered MESSAGE_TOO_LARGE
	payloads := [][]byte{oversizedMeta, malformed, badSize}
	for i := 0; i < 3000 && soakSleep(ctx, 20*time.Millisecond); i++ {
		n := l.nextSource.Add(1)
		src := &net.TCPAddr{IP: net.IPv4(127, 60, byte(n/3/250), byte(n/3%250+1))}
		c, err := soakDial(ctx, src, l.addr)
		if err != nil {
			continue
		}
		l.hostileConns.Add(1)
		if worker == 0 && i%10 == 0 {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if code, err := soakProduceAnswer(c, produce); err == nil && code == 10 {
				l.answered.Add(1)
			}
		} else {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write(payloads[i%len(payloads)])
			awaitClose(c, 5*time.Second)
		}
		c.Close()
	}
}

// banBurst reconnects from one address with a bad size prefix, ten times a
// second: kafkaguard bans it after five and refuses the rest at accept.
func (l *promLoad) banBurst(ctx context.Context) {
	src := &net.TCPAddr{IP: net.IPv4(127, 61, 0, 1)}
	for i := 0; i < 2000 && ctx.Err() == nil; i++ {
		c, err := soakDial(ctx, src, l.addr)
		if err != nil {
			soakSleep(ctx, 100*time.Millisecond)
			continue
		}
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte{0, 0, 0, 2, 0, 0}) // a refusal at accept may reset it first
		awaitClose(c, 5*time.Second)
		c.Close()
		l.burst.Add(1)
		soakSleep(ctx, 100*time.Millisecond)
	}
}
