package limits

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// longWait is a wait that never elapses in a passing test; it bounds a broken one.
const longWait = 30 * time.Second

func mustPool(t testing.TB, o PoolOptions) *Pool {
	t.Helper()
	p, err := NewPool(o)
	if err != nil {
		t.Fatalf("NewPool(%+v): %v", o, err)
	}
	return p
}

// waitFor polls cond until it holds; the bound is generous and only a broken test reaches it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 10_000; i++ {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestNewPool(t *testing.T) {
	tests := []struct {
		name      string
		o         PoolOptions
		wantErr   bool
		wantBytes int64
	}{
		{"even", PoolOptions{ChunkBytes: 1024, TotalBytes: 8192}, false, 8192},
		{"rounds down", PoolOptions{ChunkBytes: 1000, TotalBytes: 2500}, false, 2000},
		{"at least one chunk", PoolOptions{ChunkBytes: 4096, TotalBytes: 10}, false, 4096},
		{"zero chunk", PoolOptions{ChunkBytes: 0, TotalBytes: 8192}, true, 0},
		{"negative chunk", PoolOptions{ChunkBytes: -1, TotalBytes: 8192}, true, 0},
		{"zero total", PoolOptions{ChunkBytes: 1024, TotalBytes: 0}, true, 0},
		{"too many chunks", PoolOptions{ChunkBytes: 1, TotalBytes: maxChunks + 1}, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPool(tt.o)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidOptions) {
					t.Fatalf("err = %v, want ErrInvalidOptions", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Capacity(); got != tt.wantBytes {
				t.Errorf("Capacity = %d, want %d", got, tt.wantBytes)
			}
			if got := p.ChunkBytes(); got != tt.o.ChunkBytes {
				t.Errorf("ChunkBytes = %d, want %d", got, tt.o.ChunkBytes)
			}
		})
	}
}

func TestPoolBudget(t *testing.T) {
	p := mustPool(t, PoolOptions{ChunkBytes: 100, TotalBytes: 300})
	var got [][]byte
	for range 3 {
		c, ok := p.TryGet()
		if !ok {
			t.Fatalf("TryGet failed with %d of 3 chunks out", len(got))
		}
		if len(c) != 100 || cap(c) != 100 {
			t.Fatalf("chunk len %d cap %d, want 100", len(c), cap(c))
		}
		got = append(got, c)
	}
	if _, ok := p.TryGet(); ok {
		t.Fatal("TryGet succeeded past the budget")
	}
	if _, err := p.Get(0, nil); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("Get(0) past the budget: err = %v, want ErrPoolExhausted", err)
	}
	if p.InUse() != 300 || p.HighWater() != 300 {
		t.Fatalf("InUse %d HighWater %d, want 300 300", p.InUse(), p.HighWater())
	}
	p.Put(got[0][:10]) // a resliced chunk goes back whole
	if p.InUse() != 200 {
		t.Fatalf("InUse after Put = %d, want 200", p.InUse())
	}
	c, ok := p.TryGet()
	if !ok || len(c) != 100 {
		t.Fatalf("TryGet after Put: ok %v len %d", ok, len(c))
	}
	if &c[0] != &got[0][0] {
		t.Error("the chunk put back was not recycled")
	}
	p.Put(c)
	p.Put(got[1])
	p.Put(got[2])
	if p.InUse() != 0 || p.HighWater() != 300 {
		t.Fatalf("after all Puts: InUse %d HighWater %d, want 0 300", p.InUse(), p.HighWater())
	}
	p.ResetHighWater()
	if p.HighWater() != 0 {
		t.Fatalf("HighWater after reset = %d, want 0", p.HighWater())
	}
}

func TestPoolPutPanics(t *testing.T) {
	tests := []struct {
		name string
		put  func(p *Pool)
	}{
		{"foreign size", func(p *Pool) { p.Put(make([]byte, 64)) }},
		{"foreign capacity", func(p *Pool) { p.Put(make([]byte, 100, 128)) }},
		{"put without get", func(p *Pool) { p.Put(make([]byte, 100)) }},
		{"put twice", func(p *Pool) {
			c, _ := p.TryGet()
			p.Put(c)
			p.Put(c)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPool(t, PoolOptions{ChunkBytes: 100, TotalBytes: 100})
			defer func() {
				if recover() == nil {
					t.Fatal("Put did not panic")
				}
			}()
			tt.put(p)
		})
	}
}

func TestPoolWaitingGetGetsPutChunk(t *testing.T) {
	var waited atomic.Int64
	p := mustPool(t, PoolOptions{ChunkBytes: 64, TotalBytes: 64, OnWait: func(time.Duration) { waited.Add(1) }})
	held, ok := p.TryGet()
	if !ok {
		t.Fatal("TryGet on a new pool failed")
	}
	type result struct {
		c   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := p.Get(longWait, nil)
		done <- result{c, err}
	}()
	waitFor(t, "Get to wait", func() bool { return p.waiting() == 1 })
	p.Put(held)
	r := <-done
	if r.err != nil {
		t.Fatalf("waiting Get: %v", r.err)
	}
	if &r.c[0] != &held[0] {
		t.Error("waiting Get did not receive the chunk put back")
	}
	if waited.Load() != 1 {
		t.Errorf("OnWait called %d times, want 1", waited.Load())
	}
	if p.waiting() != 0 {
		t.Errorf("waiting = %d after Get returned", p.waiting())
	}
}

func TestPoolGetFails(t *testing.T) {
	closed := make(chan struct{})
	close(closed)
	tests := []struct {
		name    string
		wait    time.Duration
		cancel  <-chan struct{}
		want    error
		waitHit int64
	}{
		{"no wait", 0, nil, ErrPoolExhausted, 0},
		{"wait expires", time.Millisecond, nil, ErrPoolExhausted, 1},
		{"cancelled", longWait, closed, ErrPoolClosed, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var waited atomic.Int64
			p := mustPool(t, PoolOptions{ChunkBytes: 8, TotalBytes: 8, OnWait: func(time.Duration) { waited.Add(1) }})
			if _, ok := p.TryGet(); !ok {
				t.Fatal("TryGet on a new pool failed")
			}
			c, err := p.Get(tt.wait, tt.cancel)
			if !errors.Is(err, tt.want) || c != nil {
				t.Fatalf("Get = %v, %v; want nil, %v", c, err, tt.want)
			}
			if waited.Load() != tt.waitHit {
				t.Errorf("OnWait called %d times, want %d", waited.Load(), tt.waitHit)
			}
			if p.InUse() != 8 {
				t.Errorf("InUse = %d, want 8", p.InUse())
			}
		})
	}
}

// TestPoolHammer checks that the budget holds, and that no chunk is handed to two owners, under many
// goroutines taking and returning chunks.
func TestPoolHammer(t *testing.T) {
	const (
		workers = 64
		rounds  = 300
		chunks  = 8
		size    = 32
	)
	p := mustPool(t, PoolOptions{ChunkBytes: size, TotalBytes: chunks * size})
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				c, err := p.Get(longWait, nil)
				if err != nil {
					errs <- err
					return
				}
				if in := p.InUse(); in > p.Capacity() || in <= 0 {
					errs <- errors.New("InUse out of range while holding a chunk")
					return
				}
				for i := range c {
					c[i] = byte(w)
				}
				if r%4 == 0 {
					runtime.Gosched() // hold it a while, so others must wait
				}
				for i := range c {
					if c[i] != byte(w) {
						errs <- errors.New("chunk written by another owner while held")
						return
					}
				}
				p.Put(c)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p.InUse() != 0 {
		t.Errorf("InUse = %d after all Puts", p.InUse())
	}
	if hw := p.HighWater(); hw > p.Capacity() || hw < size {
		t.Errorf("HighWater = %d, want in [%d, %d]", hw, size, p.Capacity())
	}
}

func TestPoolAllocatesLazily(t *testing.T) {
	const budget = 64 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := mustPool(t, PoolOptions{ChunkBytes: 16 << 10, TotalBytes: budget})
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > budget/16 {
		t.Fatalf("a new pool grew the heap by %d bytes before any Get", grew)
	}
	c, err := p.Get(0, nil)
	if err != nil || len(c) != 16<<10 {
		t.Fatalf("Get = len %d, %v", len(c), err)
	}
	p.Put(c)
	runtime.KeepAlive(p)
}

func BenchmarkPoolGetPut(b *testing.B) {
	p := mustPool(b, PoolOptions{ChunkBytes: 16 << 10, TotalBytes: 1 << 20})
	b.ReportAllocs()
	for b.Loop() {
		c, err := p.Get(time.Second, nil)
		if err != nil {
			b.Fatal(err)
		}
		p.Put(c)
	}
}

func BenchmarkPoolGetPutParallel(b *testing.B) {
	p := mustPool(b, PoolOptions{ChunkBytes: 16 << 10, TotalBytes: 1 << 20})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := p.Get(time.Second, nil)
			if err != nil {
				b.Error(err)
				return
			}
			p.Put(c)
		}
	})
}

// Reserve takes whole chunks of the budget for memory the caller allocates:
// counted in InUse and the high-water mark, refused past the budget, and
// handed back to a waiting Get by Unreserve.
func TestPoolReserve(t *testing.T) {
	p := mustPool(t, PoolOptions{ChunkBytes: 64, TotalBytes: 4 * 64})
	held, _ := p.TryGet()
	p.Put(held) // one chunk allocated and free: Reserve drops it

	if _, err := p.Reserve(5*64, longWait, nil); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("Reserve over the whole budget: %v, want ErrPoolExhausted at once", err)
	}
	k, err := p.Reserve(3*64+1, longWait, nil) // rounds up to 4 chunks
	if err != nil || k != 4 {
		t.Fatalf("Reserve = %d, %v; want 4 chunks", k, err)
	}
	if p.InUse() != 4*64 || p.HighWater() != 4*64 {
		t.Errorf("InUse %d, HighWater %d; want the whole budget", p.InUse(), p.HighWater())
	}
	if _, ok := p.TryGet(); ok {
		t.Fatal("TryGet succeeded with the budget reserved")
	}
	if _, err := p.Reserve(1, time.Millisecond, nil); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("Reserve with the budget spent: %v, want ErrPoolExhausted after the wait", err)
	}
	if p.InUse() != 4*64 {
		t.Errorf("a failed Reserve left InUse at %d", p.InUse())
	}

	done := make(chan error, 1)
	go func() {
		c, err := p.Get(longWait, nil)
		if err == nil {
			p.Put(c)
		}
		done <- err
	}()
	waitFor(t, "Get to wait", func() bool { return p.waiting() == 1 })
	p.Unreserve(k)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("waiting Get after Unreserve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting Get was not woken by Unreserve")
	}
	if p.InUse() != 0 {
		t.Errorf("InUse = %d after Unreserve and Put", p.InUse())
	}
	// The whole budget is usable again.
	if k, err := p.Reserve(4*64, 0, nil); err != nil || k != 4 {
		t.Fatalf("Reserve of the budget after Unreserve = %d, %v", k, err)
	}
}

// Reservations and chunks from many goroutines never pass the budget and
// never lose a slot.
func TestPoolReserveHammer(t *testing.T) {
	const size = 32
	p := mustPool(t, PoolOptions{ChunkBytes: size, TotalBytes: 8 * size})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Go(func() {
			for r := range 200 {
				if (w+r)%3 == 0 {
					k, err := p.Reserve(int64(1+r%3)*size, longWait, nil)
					if err != nil {
						errs <- err
						return
					}
					if p.InUse() > p.Capacity() {
						errs <- errors.New("InUse over the budget")
					}
					runtime.Gosched()
					p.Unreserve(k)
					continue
				}
				c, err := p.Get(longWait, nil)
				if err != nil {
					errs <- err
					return
				}
				runtime.Gosched()
				p.Put(c)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if p.InUse() != 0 {
		t.Errorf("InUse = %d after everything was given back", p.InUse())
	}
	if k, err := p.Reserve(p.Capacity(), 0, nil); err != nil || k != 8 {
		t.Fatalf("the whole budget is not reservable at the end: %d, %v", k, err)
	}
}

// Keep turns a held chunk into a reserved one: still counted until Unreserve,
// which makes the slot usable again.
func TestPoolKeep(t *testing.T) {
	p := mustPool(t, PoolOptions{ChunkBytes: 64, TotalBytes: 64})
	c, _ := p.TryGet()
	k := p.Keep(c)
	if k != 1 || p.InUse() != 64 {
		t.Fatalf("Keep = %d, InUse %d; want 1 and the chunk still counted", k, p.InUse())
	}
	if _, ok := p.TryGet(); ok {
		t.Fatal("TryGet succeeded while the kept chunk's budget is held")
	}
	p.Unreserve(k)
	if p.InUse() != 0 {
		t.Fatalf("InUse = %d after Unreserve", p.InUse())
	}
	if _, ok := p.TryGet(); !ok {
		t.Fatal("the slot was not given back")
	}
}
