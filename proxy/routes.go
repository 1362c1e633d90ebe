package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
)

// ErrNoRoute is returned by RemoveRoute for an address no route listens on.
var ErrNoRoute = errors.New("proxy: no such route")

// routeList returns the routes served now. The slice is never changed in place: AddRoute and RemoveRoute
// store a new one. Before New has stored one (a Server built by hand in a test) it is routes.
func (s *Server) routeList() []*route {
	if p := s.rt.Load(); p != nil {
		return *p
	}
	return s.routes
}

// AddRoute binds a new listener while the server runs and starts accepting on it; metadata answers
// advertise it from then on. It is how a config reload adds a listener. The accept loop is one of the
// server's background goroutines, which Shutdown waits for.
func (s *Server) AddRoute(rt Route) error {
	if _, _, err := net.SplitHostPort(rt.Listen); err != nil {
		return fmt.Errorf("proxy: route listen %q: %v: %w", rt.Listen, err, ErrInvalidOptions)
	}
	host, port, err := net.SplitHostPort(rt.Upstream)
	if err != nil {
		return fmt.Errorf("proxy: route upstream %q: %v: %w", rt.Upstream, err, ErrInvalidOptions)
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return fmt.Errorf("proxy: upstream %q: bad port: %w", rt.Upstream, err)
	}
	r := newRoute(rt, host, int32(p))
	ln, err := net.Listen("tcp", rt.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", rt.Listen, err)
	}
	r.ln, r.listenAddr = ln, ln.Addr().String()
	if err := r.resolveAdvertised(); err != nil {
		ln.Close()
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		ln.Close()
		return ErrServerClosed
	}
	next := append(slices.Clone(s.routeList()), r)
	s.rt.Store(&next)
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := s.acceptLoop(r); err != nil {
			s.log.Error().Err(err).Str("listener", r.listenAddr).Msg("listener stopped")
		}
	}()
	return nil
}

// RouteAddr is a served route as configured (its listen address and upstream) with the address it bound.
type RouteAddr struct {
	Listen, Upstream string
	Addr             net.Addr
}

// RouteAddrs returns the routes served now that have bound, with their addresses. They come in route
// order, which after AddRoute and RemoveRoute is not the config's (kept routes first, added ones last),
// so a caller matches them to its listeners by Listen and Upstream, never by position; a route being
// removed can still be listed until RemoveRoute takes it out, before the one that replaced it.
func (s *Server) RouteAddrs() []RouteAddr {
	rs := s.routeList()
	out := make([]RouteAddr, 0, len(rs))
	for _, r := range rs {
		if r.ln != nil {
			out = append(out, RouteAddr{Listen: r.Listen, Upstream: r.Upstream, Addr: r.ln.Addr()})
		}
	}
	return out
}

// RemoveRoute stops accepting on the route rt names (the route AddRoute or New was given, or one whose
// bound address is rt.Listen) and drains its connections as Shutdown drains all of them: each finishes the frame it is
// reading and receives what it is owed, then closes. When ctx ends first, the connections left are
// closed. It returns once the route's connections are gone, and ctx's error if it had to close some.
// The server's other routes and connections are untouched.
func (s *Server) RemoveRoute(ctx context.Context, rt Route) error {
	s.mu.Lock()
	var r *route
	cur := s.routeList()
	for _, x := range cur {
		if x.Route == rt {
			r = x
			break
		}
	}
	for _, x := range cur {
		if r == nil && x.listenAddr == rt.Listen {
			r = x
		}
	}
	if r == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w listens on %s", ErrNoRoute, rt.Listen)
	}
	next := slices.DeleteFunc(slices.Clone(cur), func(x *route) bool { return x == r })
	s.rt.Store(&next)
	r.closing.Store(true)
	s.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
	}
	for _, c := range s.routeConns(r) {
		c.interrupt()
	}
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for {
		conns := s.routeConns(r)
		if len(conns) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			for _, c := range conns {
				c.abort()
			}
			return ctx.Err()
		case <-s.done:
			return nil // Shutdown drains them
		case <-t.C:
		}
	}
}

// drainPoll is how often RemoveRoute looks whether the route's connections have ended.
const drainPoll = 20 * time.Millisecond

// routeConns lists the connections accepted on r.
func (s *Server) routeConns(r *route) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for c := range s.conns {
		if c.r == r {
			out = append(out, c)
		}
	}
	return out
}

// draining reports whether the connection should end at its next frame boundary: the server is
// shutting down or its route is being removed.
func (c *conn) draining() bool { return c.s.draining.Load() || c.r.closing.Load() }
