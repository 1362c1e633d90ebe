package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Attackers bind source addresses in 127.0.0.0/8, one block per attack, so
// kafkaguard's per-IP gate (50 new connections/s, 1000 at once) does not
// simply refuse them: the attacks reach the pool and the pumps.
const (
	blockTrickle = 1
	blockSlow    = 2
	blockFlood   = 3
	blockIdleB   = 4
	blockIdleC   = 5
)

func sourceIP(block byte, i int) net.IP {
	return net.IPv4(127, block, byte(i/250), byte(i%250+1))
}

func dialFrom(ip net.IP, addr string, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: ip}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// requestHeader appends a request header v1 to a size prefix.
func requestFrame(size int32, key, version int16, corr int32, clientID string) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(size))
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	return append(b, clientID...)
}

// produceStart is the start of a Produce v7 frame declaring size bytes:
// header, null transactional id, acks=1, timeout; the rest never comes.
func produceStart(size int32, clientID string) []byte {
	b := requestFrame(size, 0, 7, 1, clientID)
	b = binary.BigEndian.AppendUint16(b, 0xffff) // null transactional_id
	b = binary.BigEndian.AppendUint16(b, 1)      // acks
	return binary.BigEndian.AppendUint32(b, 30000)
}

// attackConn writes first, then every step writes step more bytes (at most
// budget in all), until deadline or until kafkaguard closes it. It reports
// whether it was closed and how long after the first write.
func attackConn(c *net.TCPConn, first, step []byte, every time.Duration, budget int, deadline time.Time) (bool, time.Duration) {
	start := time.Now()
	c.SetWriteDeadline(deadline)
	if _, err := c.Write(first); err != nil {
		return !isTimeout(err), time.Since(start)
	}
	sent := len(first)
	var buf [512]byte
	for range 1_000_000 {
		now := time.Now()
		if !now.Before(deadline) {
			return false, 0
		}
		c.SetReadDeadline(earliest(deadline, now.Add(every)))
		if _, err := c.Read(buf[:]); err != nil && !isTimeout(err) {
			return true, time.Since(start)
		}
		if len(step) == 0 || sent+len(step) > budget || !time.Now().Before(deadline) {
			continue
		}
		if _, err := c.Write(step); err != nil {
			if isTimeout(err) {
				return false, 0
			}
			return true, time.Since(start)
		}
		sent += len(step)
	}
	return false, 0
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}

// quietBaseline measures the well-behaved client on B without an attack,
// once, as the reference of every attack's latency ratio.
func (b *bench) quietBaseline(ctx context.Context) error {
	if b.quiet.samples != nil {
		return nil
	}
	res, err := produceLatency(ctx, b.targets[pathB], b.payload, b.s.latBytes, b.s.goodRate, b.s.attack)
	if err != nil {
		return fmt.Errorf("quiet baseline: %w", err)
	}
	b.quiet = res
	return nil
}

// underAttack runs attack against a fresh kafkaguard while the
// well-behaved client produces at --good-rate through it, sampling
// kafkaguard's RSS. Each attack gets its own kafkaguard process, so the
// pool high water /metrics reports (the most held at once since start) is
// the attack's and no ban of one attack outlives it.
func (b *bench) underAttack(ctx context.Context, h *hostile, attack func(deadline time.Time)) error {
	if err := b.quietBaseline(ctx); err != nil {
		return err
	}
	if err := b.startGuard(); err != nil {
		return err
	}
	if err := b.kg.FreeOSMemory(); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	base, err := readProc(b.kg.pid)
	if err != nil {
		return err
	}
	stop, err := b.profile(h.name, b.s.attack.Seconds())
	if err != nil {
		return err
	}
	resetPeak(b.kg.pid)
	smp := startSampler(b.kg.pid, 50*time.Millisecond, 20*60*5)
	var good latencyResult
	var goodErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		good, goodErr = produceLatency(ctx, b.targets[pathB], b.payload, b.s.latBytes, b.s.goodRate, b.s.attack)
	}()
	attack(time.Now().Add(b.s.attack))
	<-done
	time.Sleep(500 * time.Millisecond) // let kafkaguard release what the attack held
	h.series = smp.finish()
	if err := stop(); err != nil {
		return err
	}
	after, err := readProc(b.kg.pid)
	if err != nil {
		return err
	}
	h.baseRSS = float64(base.rssKiB) / 1024
	h.peakRSS = float64(after.hwmKiB) / 1024
	h.cpu = after.cpu - base.cpu
	m, err := b.kg.metrics()
	if err != nil {
		return err
	}
	h.poolHighWater = m["kafkaguard_pool_bytes_high_water"] / (1 << 20)
	h.quietP99 = percentile(b.quiet.samples, 0.99)
	h.goodP99 = percentile(good.samples, 0.99)
	h.goodErrs = good.errs
	h.goodSent = int64(len(good.samples)) + good.errs
	if goodErr != nil {
		h.goodErrs = -1
		fmt.Fprintf(os.Stderr, "%s: well-behaved client: %v\n", h.name, goodErr)
	}
	b.hostiles = append(b.hostiles, h)
	return nil
}

// spread runs one attacking connection per source address in block, n in
// all, dialing at most 64 at a time; conn returns whether kafkaguard closed
// the connection and after how long.
func (b *bench) spread(h *hostile, block byte, deadline time.Time, conn func(*net.TCPConn) (bool, time.Duration)) {
	sem := make(chan struct{}, 64)
	var (
		mu     sync.Mutex
		closes []time.Duration
		wg     sync.WaitGroup
	)
	for i := range h.conns {
		if !time.Now().Before(deadline) {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialFrom(sourceIP(block, i), b.kg.addr, 2*time.Second)
			<-sem
			if err != nil {
				return
			}
			defer c.Close()
			if closed, after := conn(c); closed {
				mu.Lock()
				closes = append(closes, after)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	h.closed = len(closes)
	slices.Sort(closes)
	if len(closes) > 0 {
		h.medianClose = closes[len(closes)/2]
	}
}

// trickle: N connections each declare a 1 GiB frame and then trickle a
// byte every 200 ms.
func (b *bench) trickle(ctx context.Context) error {
	h := &hostile{name: wTrickle, what: "declare 1 GiB, trickle 1 B/200 ms", conns: b.s.conns}
	return b.underAttack(ctx, h, func(deadline time.Time) {
		first := produceStart(1<<30, "bench-trickle")
		b.spread(h, blockTrickle, deadline, func(c *net.TCPConn) (bool, time.Duration) {
			return attackConn(c, first, []byte{0}, 200*time.Millisecond, 1<<30, deadline)
		})
	})
}

// slowFrames: N connections each send a Produce just under the 1 MiB limit
// at 40 KiB/s, so none completes within the attack and kafkaguard must hold
// what arrived (store and forward) within its pool.
func (b *bench) slowFrames(ctx context.Context) error {
	const size = 1<<20 - 64
	h := &hostile{name: wSlow, what: "just-under-limit Produce at 40 KiB/s each", conns: b.s.conns}
	return b.underAttack(ctx, h, func(deadline time.Time) {
		first := produceStart(size, "bench-slow")
		step := make([]byte, 4<<10)
		b.spread(h, blockSlow, deadline, func(c *net.TCPConn) (bool, time.Duration) {
			return attackConn(c, first, step, 100*time.Millisecond, size+4-1, deadline)
		})
	})
}

// flood: workers open connections as fast as they can from --flood-ips
// source addresses, each declaring 50 MiB, until the attack ends or 200k
// connections were opened.
func (b *bench) flood(ctx context.Context) error {
	h := &hostile{name: wFlood, what: fmt.Sprintf("reconnect flood from %d IPs, %d dialers, 50 MiB declared", b.s.floodIPs, b.s.floodConns)}
	return b.underAttack(ctx, h, func(deadline time.Time) {
		first := produceStart(50<<20, "bench-flood")
		var attempts, closed, failed atomic.Int64
		var wg sync.WaitGroup
		for w := range b.s.floodConns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf [512]byte
				for j := 0; j < 200_000 && time.Now().Before(deadline); j++ {
					if attempts.Add(1) > 200_000 {
						return
					}
					k := (w + j*b.s.floodConns) % b.s.floodIPs
					c, err := dialFrom(sourceIP(blockFlood, k), b.kg.addr, time.Second)
					if err != nil {
						failed.Add(1)
						time.Sleep(time.Millisecond)
						continue
					}
					c.SetDeadline(earliest(deadline, time.Now().Add(time.Second)))
					c.Write(first)
					if _, err := io.ReadFull(c, buf[:]); err != nil && !isTimeout(err) {
						closed.Add(1)
					}
					c.SetLinger(0)
					c.Close()
				}
			}()
		}
		wg.Wait()
		h.attempts = int(min(attempts.Load(), 200_000))
		h.closed = int(closed.Load())
		h.conns = h.attempts
		h.dialFailed = int(failed.Load())
	})
}

// idleConns measures what an idle Kafka connection costs kafkaguard and,
// for reference, the relay: N connections each complete one ApiVersions
// (so the upstream is dialed and both pumps run) and then stay silent; or,
// silent, N connections that connect and send nothing (neither proxy dials
// the broker before a client's first bytes), which is how 10 000 fit a
// machine whose open-file limit is 20 000: a dialled connection is two
// sockets in the proxy.
func (b *bench) idleConns(ctx context.Context, silent bool) error {
	for _, p := range []int{pathB, pathC} {
		if err := ctx.Err(); err != nil {
			return err
		}
		t := b.targets[p]
		block := byte(blockIdleB)
		if p == pathC {
			block = blockIdleC
		}
		res, err := b.idleOn(t, block, silent)
		if err != nil {
			return err
		}
		res.path, res.silent = pathNames[p], silent
		b.idle = append(b.idle, res)
	}
	return nil
}

// settledProc asks proc to return freed memory to the OS, gives it 300 ms, and reads its figures.
func settledProc(proc process) (procStat, error) {
	if err := proc.FreeOSMemory(); err != nil {
		return procStat{}, err
	}
	time.Sleep(300 * time.Millisecond)
	return readProc(proc.PID())
}

func (b *bench) idleOn(t target, block byte, silent bool) (idleResult, error) {
	n := b.s.conns
	if b.s.idleConns > 0 {
		n = b.s.idleConns
	}
	proc := t.proc
	base, err := settledProc(proc)
	if err != nil {
		return idleResult{}, err
	}
	conns := make([]*net.TCPConn, n)
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 32)
	req := requestFrame(0, 18, 0, 1, "bench-idle") // ApiVersions v0, empty body
	binary.BigEndian.PutUint32(req, uint32(len(req)-4))
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := dialFrom(sourceIP(block, i), t.seed, 2*time.Second)
			if err != nil {
				failed.Add(1)
				return
			}
			if silent {
				conns[i] = c
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var sz [4]byte
			_, err = c.Write(req)
			if err == nil {
				_, err = io.ReadFull(c, sz[:])
			}
			if err == nil {
				_, err = io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(sz[:])))
			}
			if err != nil {
				failed.Add(1)
				c.Close()
				return
			}
			c.SetDeadline(time.Time{})
			conns[i] = c
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		time.Sleep(500 * time.Millisecond)
	}()
	ok := n - int(failed.Load())
	if ok == 0 {
		return idleResult{}, fmt.Errorf("idle %s: no connection completed (connect, then ApiVersions unless silent)", t.name)
	}
	// Idle means idle for a while: past kafkaguard's response-pump linger
	// (1 s), after which an idle connection runs one goroutine.
	time.Sleep(2500 * time.Millisecond)
	raw, err := readProc(proc.PID())
	if err != nil {
		return idleResult{}, err
	}
	gc, err := settledProc(proc)
	if err != nil {
		return idleResult{}, err
	}
	return idleResult{
		conns:       ok,
		rawKiB:      float64(raw.rssKiB-base.rssKiB) / float64(ok),
		afterGCKiB:  float64(gc.rssKiB-base.rssKiB) / float64(ok),
		baseMiB:     float64(base.rssKiB) / 1024,
		withConnMiB: float64(raw.rssKiB) / 1024,
	}, nil
}
