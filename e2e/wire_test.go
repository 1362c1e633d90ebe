package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort returns a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// metadataV0 is a whole Metadata v0 request for all topics, size prefix
// included, with correlation id 4242 and client id "e2e".
func metadataV0() []byte {
	body := []byte{0, 3, 0, 0, 0, 0, 0x10, 0x92, 0, 3, 'e', '2', 'e', 0, 0, 0, 0}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// metadataProbe sends a Metadata v0 request to addr and checks that an answer
// with the right correlation id and at least one broker comes back in time.
func metadataProbe(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(metadataV0()); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return fmt.Errorf("reading response size: %w", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 8 || n > 1<<20 {
		return fmt.Errorf("response size %d", n)
	}
	resp := make([]byte, n)
	if _, err := io.ReadFull(c, resp); err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if corr := binary.BigEndian.Uint32(resp); corr != 4242 {
		return fmt.Errorf("correlation id %d, want 4242", corr)
	}
	if brokers := int32(binary.BigEndian.Uint32(resp[4:])); brokers < 1 {
		return fmt.Errorf("%d brokers in metadata", brokers)
	}
	return nil
}

// errNotClosed says a connection the test expected to be closed stayed open.
var errNotClosed = errors.New("connection still open")

// awaitClose reads from c until the peer closes it (EOF or reset) or the
// deadline passes; data the peer sends first is discarded, bounded.
func awaitClose(c net.Conn, within time.Duration) error {
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 4096)
	for range 1024 {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errNotClosed
		}
		return nil
	}
	return errNotClosed
}

// rssKiB reads a process's resident set size from /proc.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("rss of %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("rss of %d: %v", pid, err)
			}
			return n
		}
	}
	t.Fatalf("rss of %d: no VmRSS line", pid)
	return 0
}

// httpGet returns the status and body of a GET, bounded in time.
func httpGet(url string) (int, string, error) {
	cl := http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(body), err
}

var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// metricSum scrapes /metrics and sums every sample of the named metric whose
// labels include all of want.
func metricSum(t *testing.T, admin, name string, want map[string]string) float64 {
	t.Helper()
	code, body, err := httpGet("http://" + admin + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := map[string]string{}
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			for _, m := range labelRE.FindAllStringSubmatch(rest[:end], -1) {
				labels[m[1]] = m[2]
			}
			rest = rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // a longer metric name with this prefix
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// eventually polls cond every interval until it holds or within passes.
func eventually(within, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}
