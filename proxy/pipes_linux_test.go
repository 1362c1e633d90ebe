//go:build linux

package proxy

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"
)

// unsettled counts the pipes open but not on the free list (taken by a
// frame, or leaked) and the free ones that still hold bytes (which put
// must close instead): both 0 once every frame has ended.
func (ps *pipes) unsettled() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := int(ps.open.Load()) - len(ps.free)
	for _, p := range ps.free {
		if p.held != 0 {
			n++
		}
	}
	return n
}

// TestPipeBoundReached holds every pipe of the server's set (its bound
// lowered to 2 by the test hook Options.pipesOpen) with two large responses
// whose readers pause, then has a third client read a large response and
// a fourth send a large Produce: with no pipe to be had, the response is
// copied through a chunk and the frame stored in chunks, both arrive whole,
// and no pipe is opened past the bound. The paused readers then read their
// responses to the end, and every pipe settles.
func TestPipeBoundReached(t *testing.T) {
	const (
		bound = 2
		// More than the kernel buffers between the proxy and a paused
		// reader hold (its receive buffer 32 KiB; the proxy's send buffer
		// autotunes up to net.ipv4.tcp_wmem's maximum, 4 MiB by default):
		// the relay stays in its pipe.
		held    = 16 << 20
		checked = 3<<20 + 777
	)
	body := make([]byte, checked)
	rng := rand.New(rand.NewPCG(21, 22))
	for i := range body {
		body[i] = byte(rng.Uint32())
	}
	b := newScriptedBroker(t, func(key int16, corr int32) ([]byte, bool) {
		switch {
		case key == 0: // the Produce
			return response(corr, 100), false
		case corr < 10: // the paused readers'
			return response(corr, held), false
		}
		r := slices.Clone(body)
		binary.BigEndian.PutUint32(r, uint32(checked-4))
		binary.BigEndian.PutUint32(r[4:], uint32(corr))
		return r, false
	})
	s, _, addr := lifecycleServer(t, b.addr(), func(o *Options) {
		o.pipesOpen = bound
		o.store = storePipe               // whatever KG_STORE_PATH says: the Produce must want a pipe
		o.WriteTimeout = 20 * time.Second // the paused readers are not cut
	})

	var paused []net.Conn
	for i := range bound {
		c := dial(t, addr)
		c.(*net.TCPConn).SetReadBuffer(32 << 10)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(rawRequest(1, 4, int32(1+i), "paused", make([]byte, 32))); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		paused = append(paused, c)
	}
	waitFor(t, 5*time.Second, "every pipe held by a paused response", func() bool {
		return s.pipes.open.Load() == bound && s.pipes.unsettled() == bound
	})

	// A third reader: no pipe to be had, the response is copied.
	if err := readLargeResponses(addr, 100, 2, body); err != nil {
		t.Fatalf("a large response with every pipe taken: %v", err)
	}
	// A fourth client's large Produce: stored in chunks, answered.
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(largeProduce(50, 600<<10, rng)); err != nil {
		t.Fatal(err)
	}
	if err := readCorr(c, 50, make([]byte, 128)); err != nil {
		t.Fatalf("a large Produce with every pipe taken: %v", err)
	}
	if n := s.pipes.open.Load(); n != bound {
		t.Errorf("%d pipes open, want the bound %d", n, bound)
	}

	for i, c := range paused {
		n, err := io.CopyN(io.Discard, c, held-64<<10)
		if err != nil {
			t.Fatalf("paused reader %d: read %d of the rest: %v", i, n, err)
		}
	}
	for _, c := range append(paused, c) {
		c.Close()
	}
	waitFor(t, 5*time.Second, "the connections gone", func() bool { return s.connCount() == 0 })
	if n := s.pipes.unsettled(); n != 0 {
		t.Errorf("%d pipes unsettled once every response ended", n)
	}
	if n := s.pipes.open.Load(); n != bound {
		t.Errorf("%d pipes open at the end, want the %d emptied ones kept", n, bound)
	}
}

// TestUrgentBytesInLargeFrames has a client send a TCP urgent byte
// (MSG_OOB) inside a frame larger than a chunk, stored or cut through,
// right where the frame's first chunk ends. (One: with several, TCP leaves
// an earlier one in the stream when a later one comes before it was read,
// so what a reader gets depends on timing.) At an urgent mark the
// socket counts no bytes (FIONREAD 0) though bytes follow, a splice moves
// nothing and a peek skips the urgent byte: the store path used to spin
// on the peek until timeouts.frame, a core per such client, and the cut
// path to wait for bytes that had come. The steps at a mark go through a
// plain read, which skips the urgent byte as every reader without
// SO_OOBINLINE does (a broker too): the frame arrives whole without the
// urgent byte; kafkaguard does not spin while the client pauses after a
// mark (its CPU time over the pause, a second, stays under half of it; a
// spin takes all of it); and a frame cut through holds its first chunk
// only while it waits.
func TestUrgentBytesInLargeFrames(t *testing.T) {
	const pause = time.Second
	type mode struct {
		storeMode
		cut bool
	}
	var modes []mode
	for _, m := range storeModes {
		modes = append(modes, mode{m, false})
	}
	for _, m := range cutModes {
		modes = append(modes, mode{m, true})
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			got := make(chan [32]byte, 1)
			b := produceBroker(t, func(body []byte) { got <- sha256.Sum256(body) })
			h := newHarness(t, harnessOpts{upstreams: []string{b.addr()}, mutate: m.mutate})
			c := dialHarness(t, h, 20*time.Second)
			f := largeProduce(1, 300<<10, rand.New(rand.NewPCG(15, 16)))
			want := sha256.Sum256(f[4+2+2+4+2+3:])
			rc, err := c.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			urgent := func() {
				var serr error
				if err := rc.Write(func(fd uintptr) bool {
					serr = syscall.Sendto(int(fd), []byte{0xAA}, syscall.MSG_OOB, nil)
					return serr != syscall.EAGAIN
				}); err != nil || serr != nil {
					t.Fatalf("send an urgent byte: %v %v", err, serr)
				}
			}
			write := func(b []byte) {
				if _, err := c.Write(b); err != nil {
					t.Fatal(err)
				}
			}
			chunk := h.pool.ChunkBytes()
			write(f[:chunk])
			urgent()
			write(f[chunk : chunk+8<<10])
			time.Sleep(100 * time.Millisecond) // kafkaguard at the bytes after the mark
			before := cpuTime()
			time.Sleep(pause)
			if used := cpuTime() - before; used > pause/2 {
				t.Errorf("kafkaguard used %v of CPU while the client paused %v after an urgent byte: it spins", used, pause)
			}
			if m.cut {
				if n := h.pool.InUse(); n != int64(chunk) {
					t.Errorf("the paused frame cut through holds %d bytes of the pool, want its first chunk (%d)", n, chunk)
				}
			}
			write(f[chunk+8<<10:])
			if _, err := readFrame(c); err != nil {
				t.Fatalf("response: %v", err)
			}
			expectBody(t, got, want)
			if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 {
				t.Errorf("frames_rejected_total = %v, want 0", n)
			}
			waitFor(t, 5*time.Second, "the pool to be given back", func() bool { return h.pool.InUse() == 0 })
			waitFor(t, 5*time.Second, "the pipes to settle", func() bool { return h.srv.pipes.unsettled() == 0 })
		})
	}
}
