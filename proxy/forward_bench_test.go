package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/limits"
)

// frameServer is a Kafka-shaped peer on loopback: it reads request frames
// (each at most maxFrame bytes) on every connection it accepts and hands
// each, whole and without its length prefix (so the correlation id is at
// [4:8]), to the handler newConn made for that connection, which
// writes what it answers; an error from either ends the connection. It
// allocates nothing per frame, so a benchmark's allocs/op are the proxy's.
func frameServer(tb testing.TB, maxFrame int, newConn func(c net.Conn) func(frame []byte) error) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				handle := newConn(c)
				buf := make([]byte, maxFrame)
				for {
					if _, err := io.ReadFull(c, buf[:4]); err != nil {
						return
					}
					n := int(binary.BigEndian.Uint32(buf))
					if n > len(buf) || n < 8 {
						return
					}
					if _, err := io.ReadFull(c, buf[:n]); err != nil {
						return
					}
					if handle(buf[:n]) != nil {
						return
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
}

// responder answers every request frame with a 4-byte body after the
// correlation id.
func responder(tb testing.TB) string {
	return frameServer(tb, 1<<20, func(c net.Conn) func([]byte) error {
		var resp [12]byte
		binary.BigEndian.PutUint32(resp[:], 8)
		return func(frame []byte) error {
			copy(resp[4:8], frame[4:8]) // correlation id
			_, err := c.Write(resp[:])
			return err
		}
	})
}

// relay is a plain byte relay (io.Copy both ways): the floor any proxy can reach.
func relay(tb testing.TB, upstream string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func benchProxy(b testing.TB, upstream string) string {
	return benchProxyStore(b, upstream, storeAuto)
}

// benchProxyStore is benchProxy storing large bodies the given way.
func benchProxyStore(b testing.TB, upstream string, store storePath) string {
	b.Helper()
	pool, _ := limits.NewPool(limits.PoolOptions{ChunkBytes: 32 << 10, TotalBytes: 64 << 20})
	pol, _ := limits.NewPolicy(limits.PolicyOptions{MaxRequestBytes: 1 << 20, MaxClientIDBytes: 256, MaxDrainBytes: 4 << 20})
	o := testOptions()
	o.Routes = []Route{{Listen: "127.0.0.1:0", Upstream: upstream}}
	o.Policy, o.Pool, o.Logger, o.Metrics = pol, pool, zerolog.Nop(), NewMetrics(nil)
	o.store = store
	srv, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		b.Fatal(err)
	}
	go srv.Serve()
	b.Cleanup(func() { srv.Shutdown(b.Context()) })
	return srv.Addrs()[0].String()
}

// BenchmarkForwardProduce sends Produce frames (acks=1) one at a time and
// waits for each answer, directly, through a plain relay and through
// kafkaguard, side by side. allocs/op of the kafkaguard case is the
// proxy's allocation per forwarded frame (the responder allocates nothing).
// kafkaguard stores frames larger than a chunk in a kernel pipe on Linux;
// kafkaguard-chunks is the same server storing them in chunks, one Read
// each, as elsewhere; kafkaguard-readv reads them into as many chunks at
// once as the socket holds bytes for. cpu-ns/op is the process's CPU per
// frame.
//
//	go test -run '^$' -bench ForwardProduce -benchmem ./proxy/
func BenchmarkForwardProduce(b *testing.B) {
	up := responder(b)
	targets := []struct{ name, addr string }{
		{"direct", up},
		{"relay", relay(b, up)},
		{"kafkaguard", benchProxy(b, up)},
		{"kafkaguard-chunks", benchProxyStore(b, up, storeChunks)},
		{"kafkaguard-readv", benchProxyStore(b, up, storeReadv)},
	}
	for _, size := range []int{1 << 10, 64 << 10, 960 << 10} {
		frame := benchProduce(size)
		for _, tg := range targets {
			b.Run(tg.name+"/"+byteSize(size), func(b *testing.B) {
				c := benchDial(b, tg.addr)
				resp := make([]byte, 12)
				// One round trip before the clock starts: kafkaguard dials
				// the broker on the first frame, and the responder then
				// allocates its read buffer (1 MiB); counted in the loop,
				// that one-off showed as ~550 B/op at 960 KiB.
				benchRoundTrip(b, c, frame, resp, 0)
				b.SetBytes(int64(len(frame)))
				b.ReportAllocs()
				defer reportCPU(b)()
				for corr := uint32(1); b.Loop(); corr++ {
					benchRoundTrip(b, c, frame, resp, corr)
				}
			})
		}
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// fetchResponder is responder for consumers: it answers every request
// frame with a response of respBytes bytes in all (length prefix included),
// built once per connection.
func fetchResponder(tb testing.TB, respBytes int) string {
	return frameServer(tb, 64<<10, func(c net.Conn) func([]byte) error {
		resp := make([]byte, respBytes)
		binary.BigEndian.PutUint32(resp, uint32(respBytes-4))
		return func(frame []byte) error {
			copy(resp[4:8], frame[4:8]) // correlation id
			_, err := c.Write(resp)
			return err
		}
	})
}

// BenchmarkForwardFetch is BenchmarkForwardProduce the other way round: a
// small Fetch request (v11, 64 bytes of body), one at a time, answered by a
// response of 1 KiB (a poll that found little), 64 KiB or 1 MiB (a full
// fetch), directly, through a plain relay and through kafkaguard. It holds
// the response side: a response that fits a chunk is relayed in one write,
// a larger one spliced. cpu-ns/op is the process's CPU per round trip;
// bytes/s count the response.
//
//	go test -run '^$' -bench ForwardFetch -benchmem ./proxy/
func BenchmarkForwardFetch(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		up := fetchResponder(b, size)
		targets := []struct{ name, addr string }{
			{"direct", up},
			{"relay", relay(b, up)},
			{"kafkaguard", benchProxy(b, up)},
		}
		req := rawRequest(1, 11, 0, "bench", make([]byte, 64))
		resp := make([]byte, size)
		for _, tg := range targets {
			b.Run(tg.name+"/"+byteSize(size), func(b *testing.B) {
				c := benchDial(b, tg.addr)
				benchRoundTrip(b, c, req, resp, 0) // the dial and the responder's buffers, before the clock
				b.SetBytes(int64(size))
				b.ReportAllocs()
				defer reportCPU(b)()
				for corr := uint32(1); b.Loop(); corr++ {
					benchRoundTrip(b, c, req, resp, corr)
				}
			})
		}
	}
}

// BenchmarkForwardPipelined is BenchmarkForwardProduce with the client
// not waiting for each answer: one goroutine writes Produce frames (acks=1)
// back to back while another reads the answers, as a producer with many
// batches in flight does, so kafkaguard's pumps stay busy and cpu-ns/op is
// mostly the per-frame work, not waking goroutines for each frame.
//
//	go test -run '^$' -bench ForwardPipelined -benchmem ./proxy/
func BenchmarkForwardPipelined(b *testing.B) {
	up := responder(b)
	targets := []struct{ name, addr string }{
		{"relay", relay(b, up)},
		{"kafkaguard", benchProxy(b, up)},
	}
	for _, size := range []int{1 << 10, 16 << 10} {
		frame := benchProduce(size)
		for _, tg := range targets {
			b.Run(tg.name+"/"+byteSize(size), func(b *testing.B) {
				c := benchDial(b, tg.addr)
				var resp [12]byte
				benchRoundTrip(b, c, frame, resp[:], 0) // the dial, before the clock
				b.SetBytes(int64(len(frame)))
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := cpuTime()
				sys0, sysOK := syscallCount()
				werr := make(chan error, 1)
				go func() {
					for range b.N {
						if _, err := c.Write(frame); err != nil {
							werr <- err
							return
						}
					}
					werr <- nil
				}()
				for range b.N {
					if _, err := io.ReadFull(c, resp[:]); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-werr; err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
				if sys1, ok := syscallCount(); ok && sysOK {
					b.ReportMetric(float64(sys1-sys0)/float64(b.N), "rw-syscalls/op")
				}
			})
		}
	}
}

// syscallCount is the process's read and write system calls so far (syscr
// + syscw of /proc/self/io, Linux only; splice and sendmsg are not among
// them): per frame, it shows what the noise of a shared machine hides in
// the CPU figure.
func syscallCount() (int64, bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	var total int64
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, false
			}
			total += n
			found++
		}
	}
	return total, found == 2
}

// benchProduce is a Produce v3 request (acks=1, no transactional id) with a
// body of size bytes.
func benchProduce(size int) []byte {
	body := make([]byte, size)
	binary.BigEndian.PutUint16(body, 0xffff) // null transactional id
	binary.BigEndian.PutUint16(body[2:], 1)  // acks=1
	return rawRequest(0, 3, 0, "bench", body)
}

// benchDial connects a benchmark's client, closed when it ends, with a
// deadline so a stuck proxy fails the run instead of hanging it.
func benchDial(b *testing.B, addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	return c
}

// benchRoundTrip sends req with correlation id corr and reads its answer,
// len(resp) bytes, which must carry corr.
func benchRoundTrip(b *testing.B, c net.Conn, req, resp []byte, corr uint32) {
	binary.BigEndian.PutUint32(req[8:], corr)
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(c, resp); err != nil {
		b.Fatal(err)
	}
	if got := binary.BigEndian.Uint32(resp[4:]); got != corr {
		b.Fatalf("response correlation id %d, want %d", got, corr)
	}
}

// reportCPU starts counting the whole process's CPU and returns the func
// that reports it per op: client and responder cost the same on every
// target, so the difference between targets is the proxy's.
func reportCPU(b *testing.B) func() {
	cpu0 := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
