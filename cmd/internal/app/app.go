// Package app wires a kafkaguard from a validated config: the chunk pool,
// the policy, the abuse gate, the proxy server, its metrics and the admin
// HTTP server (admin.go) with its status page (status.go). Start starts
// their goroutines (accept loops, admin server, gate sweeper, the status
// page's refusal sampler, one dial of each upstream, the config file
// watcher of reload.go, and one drain per listener a reload removed); Stop drains
// connections and waits for all of them. cmd/kafkaguard runs kafkaguard
// through it; cmd/kafkaguard-bench measures the built binary and reads its
// figures from /metrics.
//
//	a, err := app.Build(cfg, log)
//	if err != nil { ... }
//	if err := a.Start(); err != nil { ... }
//	defer a.Stop()
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/config"
	"github.com/kafkaguard/kafkaguard/limits"
	"github.com/kafkaguard/kafkaguard/proxy"
)

// App is a running kafkaguard: the proxy, its admin HTTP server and the
// goroutines that tend the gate. start/stop own all of them.
type App struct {
	cfg   config.Config
	log   zerolog.Logger
	srv   *proxy.Server
	gate  *limits.Gate
	reg   *prometheus.Registry
	admin *http.Server
	adLn  net.Listener
	mets  *http.Server // admin.metrics_address: the read-only endpoints only
	hist  history      // refusals over the last 15 minutes, for the status page; the monitor writes it
	start time.Time
	wg    sync.WaitGroup
	stopc chan struct{}

	// live is the config in force: cfg until a reload replaces it (reload.go). token is the admin
	// API's bearer token, nil when admin.token_file is unset (guard.go). level is the log level a
	// reload changes, nil when the logger's level is fixed.
	live   atomic.Pointer[config.Config]
	token  atomic.Pointer[string]
	level  *LogLevel
	reload *reloader
	guard  *adminGuard
	// routes are the proxy routes route built, one per listener in force, each with its certificate
	// sources: a reload appends the ones it adds, removes exactly the route of each listener it
	// removes (its TLS sources with it, see forgetRoute), and asks every TLS source left to look at
	// its files at once (CheckNow). Owned by whoever holds reload.mu (Build before Start).
	routes []builtRoute
	// tlsMetrics is the certificate-expiry gauge every TLS source reports to.
	tlsMetrics *proxy.TLSMetrics
}

// NewLogger builds the zerolog logger log configures. Console lines are coloured only when w is a
// terminal and NO_COLOR is unset: in a pipe or a file (kubectl logs, journald) escapes are noise.
func NewLogger(c config.Log, w io.Writer) (zerolog.Logger, error) {
	log, _, err := NewLevelLogger(c, w)
	return log, err
}

// NewLevelLogger is NewLogger with the level held apart, so a reload can change it: give the
// LogLevel to App.SetLogLevel.
func NewLevelLogger(c config.Log, w io.Writer) (zerolog.Logger, *LogLevel, error) {
	if _, err := zerolog.ParseLevel(c.Level); err != nil {
		return zerolog.Nop(), nil, fmt.Errorf("log.level: %w", err)
	}
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !colourful(w)}
	}
	lvl := &LogLevel{}
	lvl.Set(c.Level)
	return zerolog.New(levelWriter{w, lvl}).Level(zerolog.DebugLevel).With().Timestamp().Logger(), lvl, nil
}

// SetLogLevel gives the App the level its logger writes at (from NewLevelLogger), so a reload of
// log.level reaches it. Without it log.level is kept as it started, and a change is logged as such.
func (a *App) SetLogLevel(l *LogLevel) { a.level = l }

// banLogBurst is how many ban and unban lines a second reach the log.
const banLogBurst = 10

// memoryHeadroom is the Go memory limit above the pool budget.
const memoryHeadroom = 64 << 20

// Build turns a validated config into an App; nothing is bound yet.
func Build(cfg config.Config, log zerolog.Logger) (*App, error) {
	a := &App{cfg: cfg, log: log, reg: prometheus.NewRegistry(), stopc: make(chan struct{})}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.live.Store(&cfg)
	a.reload = newReloader(a.reg)
	a.guard = newAdminGuard(a)
	if cfg.Admin.TokenFile != "" {
		tok, err := config.ReadToken(cfg.Admin.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin.token_file: %w", err)
		}
		a.token.Store(&tok)
	}
	warnReadableSecrets(log, &cfg)
	m := proxy.NewMetrics(a.reg)

	// Pool chunks live on the Go heap; without a limit the collector lets
	// garbage grow to about another pool's worth before it runs. A soft
	// limit of the pool budget plus room for everything else keeps RSS near
	// the budget. GOMEMLIMIT, when set, wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(cfg.Pool.TotalBytes) + memoryHeadroom)
	}
	pool, err := limits.NewPool(limits.PoolOptions{
		ChunkBytes: int(cfg.Pool.ChunkBytes),
		TotalBytes: int64(cfg.Pool.TotalBytes),
		OnWait:     func(d time.Duration) { m.PoolWait(d.Seconds()) },
	})
	if err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	registerPoolGauges(a.reg, pool)

	pol, err := limits.NewPolicy(policyOptions(cfg))
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}

	if ab := cfg.Abuse; ab.Enabled {
		// Bans come from many prefixes at once in an attack; like every line an
		// attacker can cause, these are rate-limited (kafkaguard_bans_total
		// still counts every ban).
		banLog := log.Sample(&zerolog.BurstSampler{Burst: banLogBurst, Period: time.Second})
		gate, err := limits.NewGate(gateOptions(ab, limits.GateOptions{
			OnBan: func(b limits.Ban) {
				m.Banned()
				banLog.Warn().Str("addr", limits.SourceString(b.Source)).Str("client_id", b.ClientID).Str("principal", b.Principal).Str("reason", b.Reason).
					Int("ban_count", b.Count).Dur("for_ms", b.Until.Sub(b.Since)).Time("until", b.Until).Msg("source banned")
			},
			OnUnban: func(b limits.Ban) {
				banLog.Info().Str("addr", limits.SourceString(b.Source)).Int("ban_count", b.Count).Msg("source unbanned")
			},
		}))
		if err != nil {
			return nil, fmt.Errorf("abuse: %w", err)
		}
		a.gate = gate
		registerGateGauges(a.reg, a.gate)
	}

	routes := make([]proxy.Route, len(cfg.Listeners))
	a.tlsMetrics = proxy.NewTLSMetrics(a.reg)
	for i, l := range cfg.Listeners {
		r, err := a.route(l)
		if err != nil {
			return nil, fmt.Errorf("listeners[%d]: %w", i, err)
		}
		routes[i] = r
	}
	// The live fields come from liveSettings, the mapping a reload uses, so Build and reload agree.
	srv, err := proxy.New(proxy.Options{
		Routes:           routes,
		Pool:             pool,
		PoolWait:         cfg.Pool.Wait,
		Gate:             a.gate,
		CutThroughBytes:  int32(cfg.Proxy.CutThroughBytes),
		CutThroughBudget: int64(cfg.Proxy.CutThroughBudget),
		MaxInflight:      cfg.Proxy.MaxInflight,
		MaxRewriteBytes:  int32(cfg.Proxy.MaxRewriteBytes),
		UnmappedPort:     cfg.Rewrite.UnmappedPort,
		Logger:           log,
		Metrics:          m,

		MaxUnauthenticatedBytes: int32(cfg.Limits.MaxUnauthenticatedBytes),

		// Unused by routes without TLS; the config's default keeps it positive.
		TLSHandshakeTimeout: cfg.Timeouts.TLSHandshake,
	}.WithSettings(liveSettings(cfg, pol)))
	if err != nil {
		return nil, err
	}
	a.srv = srv
	return a, nil
}

// Start binds every listener and the admin address and starts serving.
func (a *App) Start() error {
	a.start = time.Now()
	if err := a.srv.Listen(); err != nil {
		return err
	}
	if addr := a.cfg.Admin.Address; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			a.srv.Shutdown(context.Background())
			return fmt.Errorf("admin: listen %s: %w", addr, err)
		}
		a.adLn = ln
		a.admin = &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error().Err(err).Msg("admin server stopped")
			}
		}()
	}
	if addr := a.cfg.Admin.MetricsAddress; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			a.srv.Shutdown(context.Background())
			if a.admin != nil {
				a.admin.Close()
			}
			return fmt.Errorf("admin: listen metrics_address %s: %w", addr, err)
		}
		a.mets = &http.Server{Handler: metricsHandler(a.srv, a.gate, a.reg), ReadHeaderTimeout: 10 * time.Second}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.mets.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error().Err(err).Msg("metrics server stopped")
			}
		}()
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			a.log.Error().Err(err).Msg("proxy stopped")
		}
	}()
	if a.admin != nil { // the history is for the status page
		a.wg.Go(func() { a.monitor(historyEvery, a.stopc) })
	}
	a.wg.Go(func() { a.warnUnansweredUpstreams(a.stopc) })
	if a.reload.path != "" && a.reload.every > 0 {
		a.wg.Go(func() { a.watchConfig(a.stopc) })
	}
	if a.gate != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					a.gate.Sweep()
				case <-a.stopc:
					return
				}
			}
		}()
	}
	addrs := make([]string, 0)
	for _, ad := range a.srv.Addrs() {
		addrs = append(addrs, ad.String())
	}
	a.log.Info().Strs("listeners", addrs).Str("admin", a.cfg.Admin.Address).Str("version", Version).Msg("kafkaguard started")
	return nil
}

// Stop drains connections (up to timeouts.shutdown) and stops everything
// Start started.
func (a *App) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), a.config().Timeouts.Shutdown)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	// When the drain used the whole timeout, ctx has expired and Shutdown
	// leaves connections mid-request open: Close ends them.
	if a.admin != nil && a.admin.Shutdown(ctx) != nil {
		a.admin.Close()
	}
	if a.mets != nil && a.mets.Shutdown(ctx) != nil {
		a.mets.Close()
	}
	a.reload.mu.Lock() // a reload under way finishes first; none starts after
	close(a.stopc)
	a.reload.mu.Unlock()
	a.wg.Wait()
	a.log.Info().Err(err).Msg("kafkaguard stopped")
	return err
}

// Server returns the proxy server.
func (a *App) Server() *proxy.Server { return a.srv }

// Log returns the app's logger.
func (a *App) Log() zerolog.Logger { return a.log }

// Version is the version kafkaguard reports; cmd/kafkaguard sets it.
var Version = "dev"
