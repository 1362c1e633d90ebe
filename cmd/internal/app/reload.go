package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kafkaguard/kafkaguard/config"
	"github.com/kafkaguard/kafkaguard/limits"
	"github.com/kafkaguard/kafkaguard/proxy"
)

// A reload reads the config file again and applies what can change without dropping a connection: the
// policy (limits, per-API limits, deny list, unknown APIs), the timeouts, the abuse gate's settings
// (keeping every ban and each source's history), the allow list, the log level, the admin token, and
// the listeners (one added starts, one removed drains as on shutdown). Open connections get the new
// settings at their next frame. The rest (config.Live says which) keeps its running value and is named
// in the log, one line per key. An invalid file changes nothing.
//
// Reloads come from SIGHUP (cmd/kafkaguard) and from the watcher below, and one runs at a time
// (reloader.mu); the config in force is a.live, read by the admin endpoints and by Stop.

// ErrReload wraps every reason a reload changed nothing.
var ErrReload = errors.New("config reload failed")

// reloader is the reload state of an App. mu is held for the whole of one reload, so two never
// interleave; the metrics are safe on their own.
type reloader struct {
	mu      sync.Mutex
	path    string   // the config file; "" means the App was built from a Config alone
	environ []string // the environment overrides, as at start
	every   time.Duration
	seen    os.FileInfo // the file as SetConfigFile found it, for the watcher's first comparison

	total   *prometheus.CounterVec
	lastOK  prometheus.Gauge
	success prometheus.Gauge
	last    time.Time // the last successful reload (zero: none yet); under lastMu, which the status page takes too
	lastMu  sync.Mutex
}

// configPollEvery is how often the watcher looks at the config file.
//
// It polls rather than using inotify (fsnotify). Kubernetes updates a mounted ConfigMap by writing a new
// directory and swapping the "..data" symlink; editors replace a file by renaming; some volumes (NFS,
// some overlays) send no events at all. One stat every two seconds, through every symlink, catches each
// of these the same way and costs nothing, and the kubelet itself syncs ConfigMaps only about once a
// minute, so the delay is not noticed. A watch would need the directory, its own goroutine anyway, and
// a fallback for the cases it misses.
const configPollEvery = 2 * time.Second

// configSettle is how long a changed file must stay unchanged before it is read, so a file caught
// while an editor writes it in place is not reported as invalid.
const configSettle = 250 * time.Millisecond

func newReloader(reg prometheus.Registerer) *reloader {
	r := &reloader{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kafkaguard_config_reloads_total",
			Help: "Config reloads (SIGHUP or a changed file) by result: success or failure (the running config stayed)."},
			[]string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kafkaguard_config_last_reload_success_timestamp_seconds",
			Help: "When the config was last loaded successfully (at start, then by each successful reload), as a Unix time."}),
		success: prometheus.NewGauge(prometheus.GaugeOpts{Name: "kafkaguard_config_last_reload_successful",
			Help: "1 if the last config reload succeeded (or none was tried since start), 0 if it failed."}),
	}
	r.total.WithLabelValues("success")
	r.total.WithLabelValues("failure")
	r.lastOK.SetToCurrentTime()
	r.success.Set(1)
	reg.MustRegister(r.total, r.lastOK, r.success)
	return r
}

// SetConfigFile names the file the App was loaded from (with the environment overrides applied then), so
// Reload can read it again and Start can watch it. every is how often the watcher looks; 0 means the
// default (2s), negative means no watcher (SIGHUP only). Call it before Start.
func (a *App) SetConfigFile(path string, environ []string, every time.Duration) {
	a.reload.path, a.reload.environ = path, slices.Clone(environ)
	a.reload.seen, _ = os.Stat(path) // now, not when the watcher starts: a change in between is seen
	if every == 0 {
		every = configPollEvery
	}
	a.reload.every = every
}

// LastReload returns when the config was last reloaded successfully; zero before the first reload.
func (a *App) LastReload() time.Time {
	a.reload.lastMu.Lock()
	defer a.reload.lastMu.Unlock()
	return a.reload.last
}

// ShutdownTimeout returns timeouts.shutdown as in force now: Stop drains for that long.
func (a *App) ShutdownTimeout() time.Duration { return a.config().Timeouts.Shutdown }

// config returns the config in force.
func (a *App) config() config.Config { return *a.live.Load() }

// Reload reads the config file named by SetConfigFile again and applies it (see Apply). Every problem is
// logged, one line per key, and counted; the error names them all. why says what asked ("SIGHUP", "file
// changed") for the log.
func (a *App) Reload(why string) error {
	if a.reload.path == "" {
		return fmt.Errorf("%w: no config file to read", ErrReload)
	}
	next, err := config.LoadValid(a.reload.path, a.reload.environ)
	if err != nil {
		a.reloadFailed(why, err)
		return fmt.Errorf("%w: %w", ErrReload, err)
	}
	return a.Apply(next, why)
}

// reloadFailed logs each problem on its own line (so each names its key) and counts the failure.
func (a *App) reloadFailed(why string, err error) {
	a.reload.total.WithLabelValues("failure").Inc()
	a.reload.success.Set(0)
	var ke *config.KeyError
	for _, e := range flattenErr(err) {
		ev := a.log.Error().Str("config", a.reload.path).Str("trigger", why)
		if errors.As(e, &ke) {
			ev = ev.Str("key", ke.Key)
		}
		ev.Err(e).Msg("config reload failed; the running config stays")
	}
}

func flattenErr(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErr(e)...)
		}
		return out
	}
	return []error{err}
}

// Apply makes a validated config the one in force, as a reload does: everything it changes is built and
// checked first (the policy, the token, the new listeners bound), so a failure changes nothing; then the
// gate, the proxy's settings, the token and the log level are swapped, new listeners start and removed
// ones drain in the background (bounded by timeouts.shutdown). Keys that cannot change live keep their
// value and are logged.
func (a *App) Apply(next config.Config, why string) error {
	a.reload.mu.Lock()
	defer a.reload.mu.Unlock()
	select {
	case <-a.stopc:
		return fmt.Errorf("%w: kafkaguard is stopping", ErrReload)
	default:
	}
	cur := a.config()
	eff, kept := config.Merge(cur, next)
	for _, k := range kept {
		a.log.Warn().Str("key", k.Key).Str("running", k.Old).Str("file", k.New).
			Msg("setting cannot change without a restart; keeping the running value")
	}

	fail := func(err error) error {
		a.reloadFailed(why, err)
		return fmt.Errorf("%w: %w", ErrReload, err)
	}
	pol, err := limits.NewPolicy(policyOptions(eff))
	if err != nil {
		return fail(&config.KeyError{Key: "limits", Err: err})
	}
	var token string
	if eff.Admin.TokenFile != "" {
		if token, err = config.ReadToken(eff.Admin.TokenFile); err != nil {
			return fail(&config.KeyError{Key: "admin.token_file", Err: err})
		}
	}
	st := liveSettings(eff, pol)
	added, removed, inPlace := listenerChanges(cur.Listeners, eff.Listeners)
	for _, l := range inPlace {
		a.log.Warn().Str("key", "listeners").Str("listener", l.Address).
			Msg("listener changed in place cannot change without a restart; keeping the running entry (remove it in one reload and add it back in the next, or restart)")
		for i := range eff.Listeners {
			if eff.Listeners[i].Address == l.Address {
				eff.Listeners[i] = l
			}
		}
	}
	changed := config.Diff(cur, eff)
	var bound []proxy.Route
	// The routes (and certificate sources) route builds for the added listeners come after firstNew;
	// unbind drops them.
	firstNew := len(a.routes)
	unbind := func() { // nothing has been accepted on them yet worth draining for long
		ctx, cancel := context.WithTimeout(context.Background(), eff.Timeouts.Shutdown)
		defer cancel()
		for _, b := range bound {
			a.srv.RemoveRoute(ctx, b)
		}
		for len(a.routes) > firstNew {
			a.forgetRoute(len(a.routes) - 1)
		}
	}
	for _, l := range added {
		r, err := a.route(l)
		if err == nil {
			err = a.srv.AddRoute(r)
		}
		if err != nil {
			unbind()
			return fail(&config.KeyError{Key: "listeners", Err: err})
		}
		bound = append(bound, r)
	}
	// Validate checks every value SetOptions and SetSettings do, and Merge keeps the ones the gate
	// refuses to change, so neither fails in practice; if one does, what was bound is unbound and the
	// gate is put back.
	var oldGate limits.GateOptions
	if a.gate != nil {
		oldGate = a.gate.Options()
		if err := a.gate.SetOptions(gateOptions(eff.Abuse, limits.GateOptions{})); err != nil {
			unbind()
			return fail(&config.KeyError{Key: "abuse", Err: err})
		}
	}
	if err := a.srv.SetSettings(st); err != nil {
		unbind()
		if a.gate != nil {
			a.gate.SetOptions(oldGate)
		}
		return fail(err)
	}
	if token == "" {
		a.token.Store(nil)
	} else {
		a.token.Store(&token)
	}
	if a.level != nil {
		a.level.Set(eff.Log.Level)
	}
	for _, l := range removed {
		// The route built for l, TLS sources and all: a route named by l's entry alone would match
		// neither a TLS route nor a bound :0 address, and could match a new route with l's address
		// and upstream (a TLS listener at :0 replaced by a plain one), which would be removed instead.
		r := routeOf(l)
		if i := slices.IndexFunc(a.routes, func(b builtRoute) bool { return b.key == listenerKey(l) }); i >= 0 {
			r = a.forgetRoute(i)
		}
		a.drainListener(l, r, eff.Timeouts.Shutdown)
	}
	for _, t := range a.tlsSources() {
		t.CheckNow() // a failure keeps the last good files and is logged by TLSFiles
	}
	a.live.Store(&eff)
	now := time.Now()
	a.reload.lastMu.Lock()
	a.reload.last = now
	a.reload.lastMu.Unlock()
	a.reload.total.WithLabelValues("success").Inc()
	a.reload.lastOK.Set(float64(now.UnixNano()) / 1e9)
	a.reload.success.Set(1)
	keys := make([]string, 0, len(changed))
	for _, c := range changed {
		keys = append(keys, c.Key)
		if c.Key != "listeners" {
			a.log.Info().Str("key", c.Key).Str("old", c.Old).Str("new", c.New).Msg("setting changed")
		}
	}
	for _, l := range added {
		a.log.Info().Str("listener", l.Address).Str("upstream", l.Upstream).Msg("listener added")
	}
	a.log.Info().Str("config", a.reload.path).Str("trigger", why).Strs("changed", keys).
		Int("kept", len(kept)).Msg("config reloaded")
	warnReadableSecrets(a.log, &eff)
	return nil
}

// drainListener stops a removed listener and drains its connections in the background, as on shutdown;
// the App's wait group owns the goroutine, so Stop waits for it.
func (a *App) drainListener(l config.Listener, r proxy.Route, timeout time.Duration) {
	a.log.Info().Str("listener", l.Address).Str("upstream", l.Upstream).Dur("timeout_ms", timeout).
		Msg("listener removed; draining its connections")
	a.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := a.srv.RemoveRoute(ctx, r); err != nil && !errors.Is(err, proxy.ErrNoRoute) {
			a.log.Warn().Str("listener", l.Address).Err(err).Msg("removed listener's drain cut short; its connections were closed")
			return
		}
		a.log.Info().Str("listener", l.Address).Msg("removed listener drained")
	})
}

// listenerChanges compares listener lists by their whole entry: a listener added or removed is one
// whose entry (address, upstream, TLS, ...) is not in the other list. A listener whose address stays but
// whose other fields changed cannot change in place (its address is bound, and its open connections were
// made under the old entry); it is returned in inPlace, with its old entry, and kept as it runs.
func listenerChanges(old, next []config.Listener) (added, removed, inPlace []config.Listener) {
	key := func(l config.Listener) string { return fmt.Sprintf("%#v", listenerKey(l)) }
	have := map[string]bool{}
	for _, l := range old {
		have[key(l)] = true
	}
	want := map[string]bool{}
	for _, l := range next {
		want[key(l)] = true
		if !have[key(l)] {
			added = append(added, l)
		}
	}
	for _, l := range old {
		if !want[key(l)] {
			removed = append(removed, l)
		}
	}
	for i := 0; i < len(removed); i++ {
		j := slices.IndexFunc(added, func(a config.Listener) bool { return a.Address == removed[i].Address })
		if j < 0 || strings.HasSuffix(removed[i].Address, ":0") {
			continue
		}
		inPlace = append(inPlace, removed[i])
		added = slices.Delete(added, j, j+1)
		removed = slices.Delete(removed, i, i+1)
		i--
	}
	return added, removed, inPlace
}

// listenerKey is a comparable view of a listener, pointers followed.
func listenerKey(l config.Listener) [6]string {
	node := ""
	if l.NodeID != nil {
		node = fmt.Sprint(*l.NodeID)
	}
	return [6]string{l.Address, l.Upstream, l.Advertised, node, fmt.Sprintf("%+v%+v", deref(l.TLS), deref(l.UpstreamTLS)), l.SASL}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// watchConfig looks at the config file every a.reload.every and reloads when what its path resolves to
// changes (another inode, size or modification time: a ConfigMap's symlink swap, an editor's rename, a
// write in place). Start runs it when SetConfigFile named a file; Stop waits for it.
func (a *App) watchConfig(stop <-chan struct{}) {
	path, every, last := a.reload.path, a.reload.every, a.reload.seen
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-stop:
			return
		}
		cur, err := os.Stat(path)
		if err != nil || sameFile(last, cur) {
			continue // a file missing mid-swap is looked at again next time
		}
		select {
		case <-time.After(configSettle):
		case <-stop:
			return
		}
		again, err := os.Stat(path)
		if err != nil || !sameFile(cur, again) {
			continue // still being written: next tick
		}
		last = again
		a.Reload("file changed")
	}
}

// sameFile reports whether two stats of one path saw the same content: the same file (device and
// inode), size and modification time.
func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// policyOptions turns the limits section into the policy's options. Names were checked by Validate,
// so every lookup succeeds.
func policyOptions(cfg config.Config) limits.PolicyOptions {
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
	return limits.PolicyOptions{
		MaxRequestBytes:  int32(cfg.Limits.MaxRequestBytes),
		PerAPI:           per,
		MaxClientIDBytes: cfg.Limits.MaxClientIDBytes,
		MaxDrainBytes:    int64(cfg.EffectiveMaxDrain()),
		Deny:             deny,
		ForwardUnknown:   cfg.Limits.UnknownAPI == config.UnknownAPIForward,
	}
}

// gateOptions turns the abuse section into the gate's options; hooks carries OnBan and OnUnban.
func gateOptions(ab config.Abuse, hooks limits.GateOptions) limits.GateOptions {
	return limits.GateOptions{
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
		OnBan:             hooks.OnBan,
		OnUnban:           hooks.OnUnban,
	}
}

// liveSettings is the part of the proxy's options a reload changes.
func liveSettings(cfg config.Config, pol *limits.Policy) proxy.Settings {
	return proxy.Settings{
		Policy:              pol,
		Weights:             proxy.Weights{Closed: cfg.Abuse.Weights.Closed, RejectedProduce: cfg.Abuse.Weights.RejectedProduce},
		HeaderTimeout:       cfg.Timeouts.Header,
		FrameTimeout:        cfg.Timeouts.Frame,
		IdleTimeout:         cfg.Timeouts.Idle,
		DialTimeout:         cfg.Timeouts.Dial,
		WriteTimeout:        cfg.Timeouts.Write,
		RequestTimeout:      cfg.Timeouts.Request,
		MaxLocalAnswerBytes: int(cfg.Limits.MaxLocalAnswerBytes),
	}
}

// route is the proxy route of listener l with its certificate files loaded, at Build and at a reload
// that adds a listener; it joins a.routes, whose TLS sources a reload tells to check their files.
func (a *App) route(l config.Listener) (proxy.Route, error) {
	r := routeOf(l)
	if err := buildTLS(&r, l, a.log, a.tlsMetrics); err != nil {
		return r, err
	}
	a.routes = append(a.routes, builtRoute{key: listenerKey(l), route: r})
	return r, nil
}

// builtRoute is the route built for a listener, keyed by the listener's whole entry, so a reload
// finds the route of an entry it removes.
type builtRoute struct {
	key   [6]string
	route proxy.Route
}

// forgetRoute takes a.routes[i] out and returns it: a reload no longer checks its certificate files,
// and their series leave the expiry gauge (TLSMetrics.Forget keeps a newer source's series under the
// same label). Files another listener also uses stay, as that listener's own sources.
func (a *App) forgetRoute(i int) proxy.Route {
	r := a.routes[i].route
	a.tlsMetrics.Forget(r.TLS)
	a.tlsMetrics.Forget(r.UpstreamTLS)
	a.routes = slices.Delete(a.routes, i, i+1)
	return r
}

// tlsSources lists the certificate sources of the routes in force.
func (a *App) tlsSources() []*proxy.TLSFiles {
	var out []*proxy.TLSFiles
	for _, b := range a.routes {
		for _, t := range []*proxy.TLSFiles{b.route.TLS, b.route.UpstreamTLS} {
			if t != nil {
				out = append(out, t)
			}
		}
	}
	return out
}

// routeOf is the proxy route of a listener without its certificate files: enough to name it.
func routeOf(l config.Listener) proxy.Route {
	r := proxy.Route{Listen: l.Address, Upstream: l.Upstream, Advertised: l.Advertised,
		SASLRequire: l.SASL == config.SASLRequire}
	if l.NodeID != nil {
		r.NodeID, r.HasNodeID = *l.NodeID, true
	}
	return r
}
