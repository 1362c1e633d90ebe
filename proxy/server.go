package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/limits"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("proxy: server closed")

// Server accepts Kafka clients on every route's listener and forwards their
// traffic to the route's broker. Build it with New, bind with Listen, run
// with Serve and stop with Shutdown.
type Server struct {
	opts     Options
	log      zerolog.Logger
	metrics  *Metrics
	routes   []*route
	rewriter *rewriter

	// routes are as New built them; Listen binds and Serve accepts on these.
	// rt is every route served now: routes, then those AddRoute added, less
	// those RemoveRoute removed (routes.go). Copied on write; read by the
	// rewriter, Addrs, Ready and Shutdown. set is what frames are judged by
	// now (settings.go).
	rt  atomic.Pointer[[]*route]
	set atomic.Pointer[Settings]

	// warnLog rate-limits lines about misbehaving clients; connLog the
	// per-connection open/close lines.
	warnLog *logLimiter
	connLog *logLimiter

	// mu guards conns and nothing else; it is never held while a socket
	// is closed or a connection's own lock is taken.
	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining atomic.Bool
	done     chan struct{}  // closed by Shutdown: pool waits, accept loops and the watcher stop
	wg       sync.WaitGroup // one per connection
	bg       sync.WaitGroup // the upstream watcher
	nextID   atomic.Uint64
	// kill ends when Shutdown stops waiting for the drain: upstream dials
	// under way give up with it.
	kill    context.Context
	killNow context.CancelFunc

	// pipes are the kernel pipes large request bodies are stored in and
	// large responses relayed through on Linux (forwardPiped, relayPiped).
	pipes pipes
	// cutOwed is the declared sizes of the frames being cut through, held
	// within Options.CutThroughBudget (oweCut).
	cutOwed atomic.Int64
}

// oweCut claims n bytes of the cut-through budget for a frame about to be
// cut through, or reports false, claiming nothing, when they do not fit:
// the frame is then stored whole. The claim is given back with payCut once
// the frame has been written or has failed.
func (s *Server) oweCut(n int64) bool {
	for {
		cur := s.cutOwed.Load()
		if cur+n > s.opts.CutThroughBudget {
			return false
		}
		if s.cutOwed.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

func (s *Server) payCut(n int64) { s.cutOwed.Add(-n) }

// route is a Route with its bound listener.
type route struct {
	Route
	ln         net.Listener
	advHost    string // "" = take the broker's host
	advPort    int32
	upHost     string
	upPort     int32
	listenAddr string
	// closing is set when RemoveRoute drains this route: its connections end between frames, as on
	// Shutdown.
	closing atomic.Bool
	// serverTLS is Route.TLS's ServerConfig, made once: every handshake
	// takes the current files through its GetConfigForClient.
	serverTLS *tls.Config
}

// newRoute is the server's state of route r, whose upstream is host:port.
func newRoute(r Route, host string, port int32) *route {
	rt := &route{Route: r, upHost: host, upPort: port}
	if r.TLS != nil {
		rt.serverTLS = r.TLS.ServerConfig()
	}
	return rt
}

// New checks opts and builds a Server; nothing is bound yet.
func New(opts Options) (*Server, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		metrics: opts.Metrics,
		warnLog: newLogLimiter(10, 20),
		connLog: newLogLimiter(200, 400),
		conns:   make(map[*conn]struct{}),
		done:    make(chan struct{}),
	}
	s.kill, s.killNow = context.WithCancel(context.Background())
	s.set.Store(settingsOf(opts))
	s.pipes.max = opts.pipesOpen
	for _, r := range opts.Routes {
		host, port, _ := net.SplitHostPort(r.Upstream)
		p, err := strconv.ParseInt(port, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("proxy: upstream %q: bad port: %w", r.Upstream, err)
		}
		s.routes = append(s.routes, newRoute(r, host, int32(p)))
	}
	s.rewriter = &rewriter{s: s}
	s.rt.Store(&s.routes)
	return s, nil
}

// Listen binds every route's listener. On error nothing stays bound.
func (s *Server) Listen() error {
	for i, r := range s.routes {
		ln, err := net.Listen("tcp", r.Listen)
		if err != nil {
			for _, prev := range s.routes[:i] {
				prev.ln.Close()
			}
			return fmt.Errorf("listen %s: %w", r.Listen, err)
		}
		r.ln = ln
		r.listenAddr = ln.Addr().String()
		if err := r.resolveAdvertised(); err != nil {
			for _, prev := range s.routes[:i+1] {
				prev.ln.Close()
			}
			return err
		}
	}
	return nil
}

// resolveAdvertised fills the host and port told to clients for this route.
func (r *route) resolveAdvertised() error {
	adv := r.Advertised
	if adv == "" {
		adv = r.listenAddr
	}
	host, port, err := net.SplitHostPort(adv)
	if err != nil {
		return fmt.Errorf("advertised address %q: %w", adv, err)
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil || p <= 0 {
		return fmt.Errorf("advertised address %q: bad port", adv)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = ""
	}
	r.advHost, r.advPort = host, int32(p)
	return nil
}

// Addrs returns the bound listener addresses in route order.
func (s *Server) Addrs() []net.Addr {
	rs := s.routeList()
	out := make([]net.Addr, 0, len(rs))
	for _, r := range rs {
		if r.ln != nil {
			out = append(out, r.ln.Addr())
		}
	}
	return out
}

// Serve runs an accept loop per listener until Shutdown. It returns
// ErrServerClosed after a Shutdown, or the first fatal accept error.
func (s *Server) Serve() error {
	errc := make(chan error, len(s.routes))
	for _, r := range s.routes {
		if r.ln == nil {
			return errors.New("proxy: Serve before Listen")
		}
		go func(r *route) { errc <- s.acceptLoop(r) }(r)
	}
	// Under s.mu, as admit adds connections: Shutdown's Wait then either
	// sees the watcher or no watcher starts.
	s.mu.Lock()
	if !s.draining.Load() {
		s.bg.Add(1)
		go s.watchUpstreams()
	}
	s.mu.Unlock()
	var first error
	for range s.routes {
		if err := <-errc; err != nil && first == nil {
			first = err
			s.closeListeners()
		}
	}
	if first == nil || s.draining.Load() {
		return ErrServerClosed
	}
	return first
}

// acceptLoop accepts on one listener. Temporary errors (out of file
// descriptors) back off from 5 ms doubling to 1 s, as net/http does.
func (s *Server) acceptLoop(r *route) error {
	var backoff time.Duration
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if s.draining.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				if backoff == 0 {
					backoff = 5 * time.Millisecond
				} else if backoff *= 2; backoff > time.Second {
					backoff = time.Second
				}
				s.log.Warn().Err(err).Dur("retry_in_ms", backoff).Str("listener", r.listenAddr).Msg("accept failed")
				select {
				case <-time.After(backoff):
				case <-s.done:
					return nil
				}
				continue
			}
			return fmt.Errorf("accept on %s: %w", r.listenAddr, err)
		}
		backoff = 0
		s.admit(r, c)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// admit runs the gate on a fresh connection, in the accept goroutine, so a
// refused connection costs no goroutine, no read and no upstream dial.
func (s *Server) admit(r *route, nc net.Conn) {
	ip := remoteIP(nc)
	if g := s.opts.Gate; g != nil && ip.IsValid() {
		if ok, reason := g.Admit(ip); !ok {
			s.metrics.refused(string(reason))
			if tc, ok := nc.(*net.TCPConn); ok {
				tc.SetLinger(0) // reset at once: no TIME_WAIT pile-up under a flood
			}
			nc.Close()
			return
		}
	}
	c := s.newConn(r, nc, ip)
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		s.releaseGate(ip)
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.metrics.connOpened()
	go c.serve()
}

func (s *Server) releaseGate(ip netip.Addr) {
	if g := s.opts.Gate; g != nil && ip.IsValid() {
		g.Release(ip)
	}
}

// forget frees a connection's place under the gate's caps, then counts its
// close, then takes it out of the set, so a connection no longer in the set
// (or no longer in kafkaguard_connections_active) has been counted and has
// freed its place.
func (s *Server) forget(c *conn) {
	s.releaseGate(c.ip)
	r, _ := c.closeReason()
	s.metrics.connClosed(r)
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

func remoteIP(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func (s *Server) closeListeners() {
	for _, r := range s.routeList() {
		if r.ln != nil {
			r.ln.Close()
		}
	}
}

// Shutdown stops accepting, lets every connection finish the frame it is
// reading and receive the responses it is owed, then returns. When ctx ends
// first, the remaining connections are closed (and dials under way
// cancelled) and ctx's error returned, at most abortGrace later: Shutdown
// returns within ctx's deadline whatever the brokers and clients do.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.draining.Swap(true) {
		close(s.done)
	}
	conns := s.snapshot()
	s.mu.Unlock()
	s.closeListeners()
	for _, c := range conns {
		c.interrupt()
	}
	idle := make(chan struct{})
	go func() { s.wg.Wait(); s.bg.Wait(); s.pipes.closeFree(); close(idle) }()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
	}
	// Abort with s.mu released: abort takes each connection's own lock,
	// and the connections' goroutines take s.mu as they end.
	s.killNow()
	s.mu.Lock()
	conns = s.snapshot()
	s.mu.Unlock()
	for _, c := range conns {
		c.abort()
	}
	select {
	case <-idle:
	case <-time.After(abortGrace):
		s.log.Error().Int("connections", s.connCount()).Dur("after_ms", abortGrace).
			Msg("connections still running after shutdown closed their sockets")
	}
	return ctx.Err()
}

// abortGrace is how long Shutdown waits for connections it has closed to
// end. Closing both sockets ends every wait a connection makes, so they end
// in microseconds; the bound keeps a bug from hanging the process's exit.
const abortGrace = 500 * time.Millisecond

// snapshot lists the connections; s.mu must be held.
func (s *Server) snapshot() []*conn {
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// connCount returns how many connections are open.
func (s *Server) connCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Ready reports whether every upstream accepts a TCP connection now.
func (s *Server) Ready(ctx context.Context) error {
	var errs []error
	for _, r := range s.routeList() {
		dctx, cancel := context.WithTimeout(ctx, s.live().DialTimeout)
		c, err := s.opts.Dial(dctx, "tcp", r.Upstream)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream %s: %w", r.Upstream, err))
			continue
		}
		c.Close()
	}
	return errors.Join(errs...)
}

// Gate returns the gate the server consults, or nil.
func (s *Server) Gate() *limits.Gate { return s.opts.Gate }
