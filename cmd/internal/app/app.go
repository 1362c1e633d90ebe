// Package app wires a kafkaguard from a validated config: the chunk pool,
// the policy, the abuse gate, the proxy server, its metrics and the admin
// HTTP server (admin.go) with its status page (status.go). Start starts
// their goroutines (accept loops, admin server, gate sweeper, the status
// page's refusal sampler, one dial of each upstream); Stop drains
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
}

// NewLogger builds the zerolog logger log configures. Console lines are coloured only when w is a
// terminal and NO_COLOR is unset: in a pipe or a file (kubectl logs, journald) escapes are noise.
func NewLogger(c config.Log, w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		return zerolog.Nop(), fmt.Errorf("log.level: %w", err)
	}
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !colourful(w)}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// banLogBurst is how many ban and unban lines a second reach the log.
const banLogBurst = 10

// memoryHeadroom is the Go memory limit above the pool budget.
const memoryHeadroom = 64 << 20

// Build turns a validated config into an App; nothing is bound yet.
func Build(cfg config.Config, log zerolog.Logger) (*App, error) {
	a := &App{cfg: cfg, log: log, reg: prometheus.NewRegistry(), stopc: make(chan struct{})}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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

	// Names were checked by Validate, so every lookup succeeds.
	per := make(map[int16]int32)
	for name, size := range cfg.Limits.API {
		key, _ := config.APIKey(name)
		per[key] = int32(size)
	}
	var deny []int16
	for _, name := range cfg.Limits.DenyAPI {
		key, _ := config.APIKey(name)
		deny = append(deny, key)
	}
	pol, err := limits.NewPolicy(limits.PolicyOptions{
		MaxRequestBytes:  int32(cfg.Limits.MaxRequestBytes),
		PerAPI:           per,
		MaxClientIDBytes: cfg.Limits.MaxClientIDBytes,
		MaxDrainBytes:    int64(cfg.EffectiveMaxDrain()),
		Deny:             deny,
		ForwardUnknown:   cfg.Limits.UnknownAPI == config.UnknownAPIForward,
	})
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}

	if ab := cfg.Abuse; ab.Enabled {
		// Bans come from many prefixes at once in an attack; like every line an
		// attacker can cause, these are rate-limited (kafkaguard_bans_total
		// still counts every ban).
		banLog := log.Sample(&zerolog.BurstSampler{Burst: banLogBurst, Period: time.Second})
		gate, err := limits.NewGate(limits.GateOptions{
			OffencesBeforeBan: ab.OffencesBeforeBan,
			OffenceWindow:     ab.OffenceWindow,
			BanMin:            ab.BanMin,
			BanMax:            ab.BanMax,
			ForgetAfter:       ab.ForgetAfter,
			MaxConnsPerIP:     ab.MaxConnectionsPerIP,
			RatePerSecond:     ab.ConnectionRatePerIP.PerSecond(),
			RateBurst:         ab.ConnectionRatePerIP.Count,
			Allow:             ab.Allow,
			MaxTracked:        ab.MaxTrackedSources,
			IPv4Prefix:        ab.IPv4Prefix,
			IPv6Prefix:        ab.IPv6Prefix,
			OnBan: func(b limits.Ban) {
				m.Banned()
				banLog.Warn().Str("addr", limits.SourceString(b.Source)).Str("client_id", b.ClientID).Str("reason", b.Reason).
					Int("ban_count", b.Count).Dur("for", b.Until.Sub(b.Since)).Time("until", b.Until).Msg("source banned")
			},
			OnUnban: func(b limits.Ban) {
				banLog.Info().Str("addr", limits.SourceString(b.Source)).Int("ban_count", b.Count).Msg("source unbanned")
			},
		})
		if err != nil {
			return nil, fmt.Errorf("abuse: %w", err)
		}
		a.gate = gate
		registerGateGauges(a.reg, a.gate)
	}

	routes := make([]proxy.Route, len(cfg.Listeners))
	tlsMetrics := proxy.NewTLSMetrics(a.reg)
	for i, l := range cfg.Listeners {
		routes[i] = proxy.Route{Listen: l.Address, Upstream: l.Upstream, Advertised: l.Advertised}
		if l.NodeID != nil {
			routes[i].NodeID, routes[i].HasNodeID = *l.NodeID, true
		}
		if err := buildTLS(&routes[i], l, log, tlsMetrics); err != nil {
			return nil, fmt.Errorf("listeners[%d]: %w", i, err)
		}
	}
	srv, err := proxy.New(proxy.Options{
		Routes:          routes,
		Policy:          pol,
		Pool:            pool,
		PoolWait:        cfg.Pool.Wait,
		Gate:            a.gate,
		Weights:         proxy.Weights{Closed: cfg.Abuse.Weights.Closed, RejectedProduce: cfg.Abuse.Weights.RejectedProduce},
		HeaderTimeout:   cfg.Timeouts.Header,
		FrameTimeout:    cfg.Timeouts.Frame,
		IdleTimeout:     cfg.Timeouts.Idle,
		DialTimeout:     cfg.Timeouts.Dial,
		WriteTimeout:    cfg.Timeouts.Write,
		RequestTimeout:  cfg.Timeouts.Request,
		CutThroughBytes: int32(cfg.Proxy.CutThroughBytes),
		MaxInflight:     cfg.Proxy.MaxInflight,
		MaxRewriteBytes: int32(cfg.Proxy.MaxRewriteBytes),
		UnmappedPort:    cfg.Rewrite.UnmappedPort,
		Logger:          log,
		Metrics:         m,

		MaxLocalAnswerBytes: int(cfg.Limits.MaxLocalAnswerBytes),
		// Unused by routes without TLS; the config's default keeps it positive.
		TLSHandshakeTimeout: cfg.Timeouts.TLSHandshake,
	})
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
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Timeouts.Shutdown)
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
	close(a.stopc)
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
