package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/limits"
)

// responder is a minimal Kafka-shaped peer on loopback: for every request
// frame it reads, it answers a 4-byte body after the correlation id. It
// allocates nothing per frame, so a benchmark's allocs/op are the proxy's.
func responder(tb testing.TB) string {
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
				buf := make([]byte, 1<<20)
				var resp [12]byte
				binary.BigEndian.PutUint32(resp[:], 8)
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
					copy(resp[4:8], buf[4:8]) // correlation id
					if _, err := c.Write(resp[:]); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String()
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

func benchProxy(b *testing.B, upstream string) string {
	return benchProxyWith(b, upstream, false)
}

// benchProxyWith is benchProxy storing large bodies in chunks, as on
// systems without splice, when noSplice is set.
func benchProxyWith(b *testing.B, upstream string, noSplice bool) string {
	if noSplice {
		return benchProxyStore(b, upstream, storeChunks)
	}
	return benchProxyStore(b, upstream, storeAuto)
}

// benchProxyStore is benchProxy storing large bodies the given way.
func benchProxyStore(b *testing.B, upstream string, store storePath) string {
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
		{"kafkaguard-chunks", benchProxyWith(b, up, true)},
		{"kafkaguard-readv", benchProxyStore(b, up, storeReadv)},
	}
	for _, size := range []int{1 << 10, 64 << 10, 960 << 10} {
		body := make([]byte, size)
		binary.BigEndian.PutUint16(body, 0xffff) // null transactional id
		binary.BigEndian.PutUint16(body[2:], 1)  // acks=1
		frame := rawRequest(0, 3, 0, "bench", body)
		for _, tg := range targets {
			b.Run(tg.name+"/"+byteSize(size), func(b *testing.B) {
				c, err := net.Dial("tcp", tg.addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Minute))
				var resp [12]byte
				b.SetBytes(int64(len(frame)))
				b.ReportAllocs()
				corr := uint32(0)
				cpu0 := cpuTime()
				defer func() {
					// The whole process's CPU: client and responder cost the
					// same on every target, so the difference is the proxy's.
					b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
				}()
				for b.Loop() {
					corr++
					binary.BigEndian.PutUint32(frame[8:], corr)
					if _, err := c.Write(frame); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, resp[:]); err != nil {
						b.Fatal(err)
					}
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
