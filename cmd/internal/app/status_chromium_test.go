//go:build linux

package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkaguard/kafkaguard/config"
)

// chromiumPath finds a Chromium: KG_CHROMIUM, else Debian's chromium on PATH. Under CI=true a missing
// browser fails the test; elsewhere it skips, saying what to install.
func chromiumPath(t *testing.T) string {
	if p := os.Getenv("KG_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found: CI installs Debian's chromium (apt-get install -y chromium)")
	}
	t.Skip("chromium not found (apt-get install -y chromium, or set KG_CHROMIUM): skipping the browser test")
	return ""
}

// runChromium runs headless Chromium with args against loopback only and returns its stdout. It runs in
// its own process group, killed by that group's id when ctx ends and after it exits, so no renderer
// outlives the test.
func runChromium(ctx context.Context, t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(),
		// Nothing but 127.0.0.1: no background fetches, and no name resolves.
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--no-first-run", "--no-default-browser-check",
		"--disable-breakpad", "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
		"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftovers of the group, if any; ESRCH when none
	}
	if err != nil {
		t.Fatalf("chromium %v: %v\nstderr:\n%s", args, err, lastLines(errb.String(), 20))
	}
	return out.Bytes()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// hostileFrames sends n oversized frames from local, one a connection, and waits for each close; a
// connection refused at accept is closed before the frame is read, which counts the same.
func hostileFrames(t *testing.T, local, target string, n int) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	for range n {
		c, err := d.Dial("tcp", target)
		if errors.Is(err, syscall.ECONNRESET) {
			continue // refused at accept, before the dial returned
		}
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte{0x7f, 0xff, 0xff, 0xff, 0, 0}) // 2 GiB declared
		if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("hostile connection from %s: %v (want a close)", local, err)
		}
		c.Close()
	}
}

// The status page, rendered by a real Chromium, shows an operator what light hostile load did: the
// refusal reasons, the ban, pool and connection figures, the upstream. KG_STATUS_SCREENSHOT=FILE keeps
// the screenshot (docs/status-page.png is one).
func TestStatusPageInChromium(t *testing.T) {
	bin := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := config.Default()
	cfg.Listeners = []config.Listener{{Address: "127.0.0.1:0", Upstream: cluster.ListenAddrs()[0]}}
	cfg.Admin.Address = "127.0.0.1:0"
	cfg.Abuse.OffencesBeforeBan = 3
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, cfg)
	defer a.Stop()
	proxyAddr := a.Server().Addrs()[0].String()
	pageURL := "http://" + a.adLn.Addr().String() + "/"

	// A well-behaved client stays connected; its records pass.
	cl, err := kgo.NewClient(kgo.SeedBrokers(proxyAddr), kgo.DefaultProduceTopic("status"), kgo.AllowAutoTopicCreation(),
		kgo.RequestTimeoutOverhead(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("fine")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// A few rounds of light hostile load, a history sample after each as if 10 s had passed: 127.0.0.2's
	// third close earns a ban and its later connections are refused at accept; 127.0.0.1x send one
	// oversized frame each and stay unbanned.
	at := time.Now()
	sampleRefusals(a.reg, &a.hist, at, nil)
	for round := range 6 {
		hostileFrames(t, "127.0.0.2", proxyAddr, 1)
		hostileFrames(t, fmt.Sprintf("127.0.0.%d", 10+round), proxyAddr, round%3)
		at = at.Add(historyEvery)
		sampleRefusals(a.reg, &a.hist, at, nil)
	}

	dom := string(runChromium(ctx, t, bin, "--dump-dom", pageURL))
	for _, want := range []string{
		"too_large", "accept:banned", // reason names
		"127.0.0.2", ">lift<", // the ban and its lift button
		"of " + humanBytes(float64(cfg.Pool.TotalBytes)), "high water", // pool against capacity
		"accepted", "answers", "never", // connections, the upstream, the last reload
		"<svg", "<rect",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	if strings.Contains(dom, "127.0.0.11</td>") {
		t.Errorf("127.0.0.11 shown banned after one offence")
	}
	if t.Failed() {
		t.Logf("rendered DOM:\n%s", dom)
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	runChromium(ctx, t, bin, "--screenshot="+shot, "--window-size=1280,900", "--hide-scrollbars", pageURL)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.DecodeConfig(f)
	f.Close()
	if err != nil || img.Width != 1280 || img.Height != 900 {
		t.Fatalf("screenshot %dx%d (%v), want 1280x900", img.Width, img.Height, err)
	}
	if keep := os.Getenv("KG_STATUS_SCREENSHOT"); keep != "" {
		b, err := os.ReadFile(shot)
		if err == nil {
			err = os.WriteFile(keep, b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot saved to %s", keep)
	}
}
