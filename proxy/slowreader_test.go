package proxy

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A slow client is the client's fault even when timeouts.request is no
// longer than timeouts.write. A large response is relayed in steps, each
// under a write deadline (timeouts.write), its reads under a broker read
// deadline (timeouts.request); when one splice both read and wrote, with
// request <= write the read deadline passed first although the broker sent
// every byte and only the client was slow, and the close was counted as
// request_timeout, the broker's fault (kafkaguard_upstream_closes_total,
// the "broker owed a response" warning). Now reads and writes wait apart,
// each way a response is relayed (responseModes): a client that stops
// reading is cut as client_error by timeouts.write, and one that reads
// steadily but takes longer than timeouts.request over a step is served.
func TestSlowClientNotBlamedOnBroker(t *testing.T) {
	for _, m := range responseModes {
		t.Run(m.name, func(t *testing.T) { testSlowClientNotBlamedOnBroker(t, m) })
	}
}

func testSlowClientNotBlamedOnBroker(t *testing.T, m responseMode) {
	const (
		bite  = 16 << 10 // socket buffers on the slow side
		total = 16 << 20 // larger than every buffer between broker and client
	)
	for _, tc := range []struct {
		name           string
		request, write time.Duration
		read           int           // bytes the client takes at a time; 0: it stops reading
		pause          time.Duration // between reads
		wantServed     bool
		size           int // of the large response
	}{
		// 32 KiB every 40 ms: a 256 KiB step takes about 330 ms, twice
		// timeouts.request and a twelfth of timeouts.write.
		{name: "steady reader, a step slower than timeouts.request", request: 150 * time.Millisecond, write: 4 * time.Second,
			read: 32 << 10, pause: 40 * time.Millisecond, wantServed: true, size: 2 << 20},
		{name: "reader that stops", request: 300 * time.Millisecond, write: time.Second, size: total},
		{name: "reader that stops, equal timeouts", request: time.Second, write: time.Second, size: total},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newScriptedBroker(t, func(_ int16, corr int32) ([]byte, bool) {
				if corr == 4 {
					return response(corr, 100), false // pipelined behind the large one
				}
				return response(corr, tc.size), false
			})
			logs := &lockedBuffer{}
			// The proxy's broker socket gets a small receive buffer, so a
			// splice step reads the broker in many bites, each after the
			// client took the one before: the read deadline is tried all
			// through the step, as with a real broker's larger responses.
			s, reg, addr := lifecycleServer(t, b.addr(), func(o *Options) {
				o.RequestTimeout, o.WriteTimeout = tc.request, tc.write
				o.Logger = zerolog.New(logs).Level(zerolog.InfoLevel)
				o.Dial = shrunkDialer(bite).DialContext
				o.responseCopy = m.copy
			})
			c := dialSlowReader(t, s, addr, bite, bite)
			c.Write(append(rawRequest(1, 4, 3, "slow", make([]byte, 32)), // Fetch: relayed, not rewritten
				rawRequest(1, 4, 4, "slow", make([]byte, 32))...))
			b.waitRequest(t)
			start := time.Now()
			got := int64(0)
			if tc.read > 0 {
				buf := make([]byte, tc.read)
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				for got < int64(tc.size) {
					n, err := io.ReadFull(c, buf[:min(tc.read, tc.size-int(got))])
					got += int64(n)
					if err != nil {
						break
					}
					time.Sleep(tc.pause)
				}
			}
			if tc.wantServed {
				if got != int64(tc.size) {
					t.Errorf("read %d of %d bytes in %v, then the connection ended", got, tc.size, time.Since(start).Round(time.Millisecond))
				}
				if err := readCorr(c, 4, make([]byte, 128)); err != nil {
					t.Errorf("the response pipelined behind the large one (queued %v before it was read): %v", time.Since(start).Round(time.Millisecond), err)
				}
				if el := time.Since(start); el < 4*tc.request {
					t.Errorf("read in %v: too fast to test anything", el)
				}
			} else {
				waitFor(t, 2*tc.write+5*time.Second, "stalled reader cut", func() bool { return s.connCount() == 0 })
				t.Logf("cut %v after the request", time.Since(start).Round(time.Millisecond))
			}
			if n := gauge(t, reg, "kafkaguard_upstream_closes_total", nil); n != 0 {
				t.Errorf("upstream_closes_total = %v, want 0: the broker sent everything\n%s", n, logs)
			}
			if strings.Contains(logs.String(), "broker owed a response") {
				t.Errorf("the broker was blamed:\n%s", logs)
			}
			if !tc.wantServed {
				waitFor(t, 2*time.Second, "close logged", func() bool { return strings.Contains(logs.String(), `"connection closed"`) })
				if !strings.Contains(logs.String(), `"reason":"client_error"`) || !strings.Contains(logs.String(), errSlowClient.Error()) {
					t.Errorf("close not logged as client_error, the client's slow read:\n%s", logs)
				}
				waitFor(t, 2*time.Second, "close counted", func() bool {
					return gauge(t, reg, "kafkaguard_connections_closed_total", map[string]string{"reason": "client_error"}) == 1
				})
			}
		})
	}
}

// shrunkDialer dials with a receive buffer of rcvbuf bytes and 1400-byte
// segments, set before the connection opens (see TestTrickleReaderCut).
// dialSlowReader connects to s at addr as a slow reader whose every bite
// the proxy sees as progress: its receive buffer (and segment size) fixed
// to rcvbuf before it connects (set later, the window it already advertised
// cannot shrink), and the proxy's send buffer to sndbuf once it has
// accepted. It skips the test where the GOOS cannot shrink a socket; the
// connection is closed when the test ends.
func dialSlowReader(t *testing.T, s *Server, addr string, rcvbuf, sndbuf int) net.Conn {
	t.Helper()
	c, err := shrunkDialer(rcvbuf).Dial("tcp", addr)
	if errors.Is(err, errors.ErrUnsupported) {
		t.Skip("no SO_RCVBUF and TCP_MAXSEG on this GOOS")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitFor(t, 2*time.Second, "connection accepted", func() bool { return s.connCount() == 1 })
	for _, pc := range s.snapshot() {
		if err := pc.client.(*net.TCPConn).SetWriteBuffer(sndbuf); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func shrunkDialer(rcvbuf int) *net.Dialer {
	return &net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = shrinkSocket(fd, rcvbuf, 1400) })
		return errors.Join(err, serr)
	}}
}
