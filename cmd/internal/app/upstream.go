package app

import (
	"context"
	"net"
	"sync"
	"time"
)

// upstreamState is what one dial of a listener's upstream found.
type upstreamState struct {
	Listener string // the bound address, or the configured one before Listen
	Upstream string
	Err      error // nil when the upstream accepted the connection
	Took     time.Duration
}

// probeUpstreams dials every listener's upstream at once, each bounded by
// timeout and ctx, and closes what it opened: it says whether a broker
// answers, nothing more. It returns in listener order.
//
// Each listener is shown by the address its route bound, found by its
// configured address and upstream, never by position: after a reload the
// server's routes are in another order than the file's. Upstreams are unique
// among listeners (config checks it), so the last route that matches is the
// listener's own; an earlier one is a route a reload is still removing.
func (a *App) probeUpstreams(ctx context.Context, timeout time.Duration) []upstreamState {
	listeners := a.config().Listeners // as reloads left them
	out := make([]upstreamState, len(listeners))
	bound := a.srv.RouteAddrs()
	var wg sync.WaitGroup
	for i, l := range listeners {
		out[i] = upstreamState{Listener: l.Address, Upstream: l.Upstream}
		for j := len(bound) - 1; j >= 0; j-- {
			if bound[j].Listen == l.Address && bound[j].Upstream == l.Upstream {
				out[i].Listener = bound[j].Addr.String()
				break
			}
		}
		wg.Go(func() {
			dctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			var d net.Dialer
			c, err := d.DialContext(dctx, "tcp", l.Upstream)
			out[i].Took, out[i].Err = time.Since(start), err
			if err == nil {
				c.Close()
			}
		})
	}
	wg.Wait()
	return out
}

// warnUnansweredUpstreams dials every upstream once at start, in the
// background so that a broker still starting never delays kafkaguard's
// listeners, and logs one warning per listener whose upstream does not
// answer: the first thing an operator wants to know when every client of a
// fresh sidecar fails. Stop cuts the dials short.
func (a *App) warnUnansweredUpstreams(stop <-chan struct{}) {
	ctx, release := withStop(stop)
	defer release()
	for _, u := range a.probeUpstreams(ctx, a.cfg.Timeouts.Dial) {
		if u.Err != nil && ctx.Err() == nil {
			a.log.Warn().Str("listener", u.Listener).Str("upstream", u.Upstream).Err(u.Err).
				Msg("upstream does not answer at start: clients of this listener fail until it does")
		}
	}
}

// withStop returns a context cancelled when stop closes or release is called; release also waits for
// the goroutine that watches stop, so it has an owner like every other.
func withStop(stop <-chan struct{}) (ctx context.Context, release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, func() { cancel(); <-done }
}
