package app

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/config"
)

// reloadApp starts an App from the YAML file at path, as `kafkaguard run` does (a level logger, the
// file remembered), with the watcher polling every poll (negative: no watcher).
func reloadApp(t *testing.T, path string, poll time.Duration) (*App, *lockedBuffer) {
	t.Helper()
	cfg, err := config.LoadValid(path, nil)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	logs := &lockedBuffer{}
	log, level, err := NewLevelLogger(cfg.Log, logs)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Build(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	a.SetLogLevel(level)
	a.SetConfigFile(path, nil, poll)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Stop() })
	return a, logs
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func kfakeBrokers(t *testing.T, n int) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(n))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// metadataFrame is a Metadata v4 request (all topics) with correlation id corr: 21 bytes after its size.
func metadataFrame(corr int32) []byte {
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 4
	return kmsg.NewRequestFormatter(kmsg.FormatterClientID("reload")).AppendRequest(nil, req, corr)
}

// metadataOn sends a Metadata request on c and reports whether its answer came (false: c was closed).
func metadataOn(t *testing.T, c net.Conn, corr int32) bool {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(metadataFrame(corr)); err != nil {
		return false
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("no answer and no close within 5s")
		}
		return false
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return false
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		t.Fatalf("answer to correlation id %d, want %d", got, corr)
	}
	return true
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func reloads(a *App, result string) float64 {
	return metricValue(a.reload.total.WithLabelValues(result))
}

// A limit lowered in the file reaches a client already connected: its next frame, on the same
// connection, is judged by the new limit. Nothing else moves: the running keys that cannot change are
// logged, and the reload is counted.
func TestReloadLimitUnderConnectedClient(t *testing.T) {
	up := kfakeBrokers(t, 1)
	path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
	base := fmt.Sprintf("listeners: [{address: 127.0.0.1:0, upstream: %s}]\nadmin: {address: \"\"}\n", up[0])
	writeFile(t, path, base+"limits: {api: {Metadata: 64KiB}}\n")
	a, logs := reloadApp(t, path, -1)
	c := dial(t, a.Server().Addrs()[0].String())
	if !metadataOn(t, c, 1) {
		t.Fatal("Metadata refused under the 64KiB limit")
	}
	okBefore := metricValue(a.reload.lastOK)

	writeFile(t, path, base+"limits: {api: {Metadata: 16B}}\npool: {total_bytes: 128MiB}\n")
	if err := a.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if metadataOn(t, c, 2) {
		t.Fatal("the next Metadata on the same connection was answered: not judged by the new 16B limit")
	}
	if got := reloads(a, "success"); got != 1 {
		t.Errorf("reloads{success} = %v, want 1", got)
	}
	if metricValue(a.reload.lastOK) < okBefore || a.LastReload().IsZero() {
		t.Error("last reload success time not advanced")
	}
	if n := logs.count(`"key":"pool.total_bytes","running":"64MiB","file":"128MiB"`); n != 1 {
		t.Errorf("%d lines name pool.total_bytes as kept, want 1:\n%s", n, logs.b.String())
	}
	if got := a.Server().Options().Pool.Capacity(); got != 64<<20 {
		t.Errorf("pool capacity %d after reload, want 64MiB kept", got)
	}
}

// An invalid file changes nothing: the running config stays, every problem is logged with its key, and
// the failure is counted.
func TestReloadInvalidFileChangesNothing(t *testing.T) {
	up := kfakeBrokers(t, 1)
	path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
	base := fmt.Sprintf("listeners: [{address: 127.0.0.1:0, upstream: %s}]\nadmin: {address: \"\"}\n", up[0])
	writeFile(t, path, base)
	a, logs := reloadApp(t, path, -1)
	pol := a.Server().Options().Policy
	c := dial(t, a.Server().Addrs()[0].String())

	writeFile(t, path, base+"limits: {api: {Metadata: 16B}, max_client_id_bytes: -3}\ntimeouts: {idel: 5s}\n")
	err := a.Reload("test")
	if !errors.Is(err, ErrReload) {
		t.Fatalf("Reload of an invalid file = %v, want ErrReload", err)
	}
	for _, key := range []string{`"key":"limits.max_client_id_bytes"`, `"key":"timeouts.idel"`} {
		if logs.count(key) != 1 {
			t.Errorf("no failure line naming %s:\n%s", key, logs.b.String())
		}
	}
	if a.Server().Options().Policy != pol {
		t.Error("the policy changed")
	}
	if !metadataOn(t, c, 1) {
		t.Error("Metadata refused: the 16B limit of the invalid file was applied")
	}
	if got := reloads(a, "failure"); got != 1 {
		t.Errorf("reloads{failure} = %v, want 1", got)
	}
	if got := metricValue(a.reload.success); got != 0 {
		t.Errorf("last_reload_successful = %v, want 0", got)
	}
	if !a.LastReload().IsZero() {
		t.Error("LastReload set by a failed reload")
	}
}

// Kubernetes updates a mounted ConfigMap by writing a new directory and swapping the ..data symlink;
// the file's own path is a symlink through it and never changes. The watcher notices the swap.
func TestReloadOnConfigMapSymlinkSwap(t *testing.T) {
	up := kfakeBrokers(t, 1)
	dir := t.TempDir()
	base := fmt.Sprintf("listeners: [{address: 127.0.0.1:0, upstream: %s}]\nadmin: {address: \"\"}\n", up[0])
	version := func(name, text string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "kafkaguard.yaml"), text)
	}
	version("..2026_11_30_01", base+"limits: {api: {Metadata: 64KiB}}\n")
	if err := os.Symlink("..2026_11_30_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kafkaguard.yaml")
	if err := os.Symlink("..data/kafkaguard.yaml", path); err != nil {
		t.Fatal(err)
	}
	a, _ := reloadApp(t, path, 20*time.Millisecond)
	c := dial(t, a.Server().Addrs()[0].String())
	if !metadataOn(t, c, 1) {
		t.Fatal("Metadata refused under the 64KiB limit")
	}

	// The kubelet's swap: the new version beside the old, a temporary link to it, renamed over ..data.
	version("..2026_11_30_02", base+"limits: {api: {Metadata: 16B}}\n")
	if err := os.Symlink("..2026_11_30_02", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for reloads(a, "success") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no reload within 5s of the symlink swap (failures: %v)", reloads(a, "failure"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if metadataOn(t, c, 2) {
		t.Fatal("Metadata answered after the swap: the new 16B limit was not applied")
	}
	if got := reloads(a, "failure"); got != 0 {
		t.Errorf("reloads{failure} = %v, want 0", got)
	}
}

// A listener added to the file starts serving; one removed stops accepting and its connections drain;
// a listener kept keeps its connections.
func TestReloadListenerAddedAndRemoved(t *testing.T) {
	up := kfakeBrokers(t, 2)
	path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
	kept, gone, added := freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := func(ls ...[2]string) string {
		var b strings.Builder
		b.WriteString("admin: {address: \"\"}\ntimeouts: {shutdown: 5s}\nlisteners:\n")
		for _, l := range ls {
			fmt.Fprintf(&b, "  - {address: %s, upstream: %s}\n", l[0], l[1])
		}
		return b.String()
	}
	writeFile(t, path, cfg([2]string{kept, up[0]}, [2]string{gone, up[1]}))
	a, logs := reloadApp(t, path, -1)
	ck, cg := dial(t, kept), dial(t, gone)
	if !metadataOn(t, ck, 1) || !metadataOn(t, cg, 1) {
		t.Fatal("Metadata refused before the reload")
	}

	writeFile(t, path, cfg([2]string{kept, up[0]}, [2]string{added, up[1]}))
	if err := a.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if !metadataOn(t, dial(t, added), 1) {
		t.Fatal("the added listener does not serve")
	}
	cg.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := cg.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection to the removed listener still open after 5s (read %d, %v)", n, err)
	}
	if c, err := net.DialTimeout("tcp", gone, time.Second); err == nil {
		c.Close()
		t.Fatal("the removed listener still accepts")
	}
	if !metadataOn(t, ck, 2) {
		t.Fatal("the kept listener's connection was disturbed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for logs.count("removed listener drained") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no drain line:\n%s", logs.b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// log.level is reloaded: lines below the new level stop.
func TestReloadLogLevel(t *testing.T) {
	up := kfakeBrokers(t, 1)
	path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
	base := fmt.Sprintf("listeners: [{address: 127.0.0.1:0, upstream: %s}]\nadmin: {address: \"\"}\n", up[0])
	writeFile(t, path, base+"log: {level: info}\n")
	a, logs := reloadApp(t, path, -1)
	writeFile(t, path, base+"log: {level: warn}\n")
	if err := a.Reload("test"); err != nil {
		t.Fatal(err)
	}
	log := a.Log()
	log.Info().Msg("after-info")
	log.Warn().Msg("after-warn")
	if logs.count("after-info") != 0 || logs.count("after-warn") != 1 {
		t.Fatalf("after reloading log.level warn: info lines %d, warn lines %d; want 0 and 1",
			logs.count("after-info"), logs.count("after-warn"))
	}
}

// metricValue reads a counter or gauge.
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// A listener that cannot bind fails the whole reload: the limit changed in the same file is not applied
// either, and the failure names listeners.
func TestReloadFailsWhenAListenerCannotBind(t *testing.T) {
	up := kfakeBrokers(t, 2)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	path := filepath.Join(t.TempDir(), "kafkaguard.yaml")
	first := fmt.Sprintf("admin: {address: \"\"}\nlisteners:\n  - {address: 127.0.0.1:0, upstream: %s}\n", up[0])
	writeFile(t, path, first)
	a, logs := reloadApp(t, path, -1)
	c := dial(t, a.Server().Addrs()[0].String())
	writeFile(t, path, first+fmt.Sprintf("  - {address: %s, upstream: %s}\nlimits: {api: {Metadata: 16B}}\n", busy.Addr(), up[1]))
	if err := a.Reload("test"); !errors.Is(err, ErrReload) {
		t.Fatalf("Reload with a busy address = %v, want ErrReload", err)
	}
	if logs.count(`"key":"listeners"`) != 1 {
		t.Errorf("the failure does not name listeners:\n%s", logs.b.String())
	}
	if !metadataOn(t, c, 1) {
		t.Fatal("Metadata refused: the failed reload's limit was applied")
	}
	if n := len(a.Server().Addrs()); n != 1 {
		t.Fatalf("%d listeners after the failed reload, want 1", n)
	}
}
