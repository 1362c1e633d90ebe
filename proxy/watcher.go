package proxy

import "time"

// upstreamCheckEvery is how often the watcher looks at upstream connections
// on which nothing is owed.
const upstreamCheckEvery = time.Second

// watchUpstreams notices brokers that close connections on which nothing is
// owed (a broker's connections.max.idle.ms, a broker restart) and closes
// the client's side too, so the client reconnects at once instead of
// finding out when its next request fails.
//
// While a response is owed the response pump reads the upstream and sees a
// close itself. An idle connection runs only its request pump, blocked in a
// read of the client; rather than a second goroutine per idle connection
// blocked in a read of the broker, this one goroutine per server peeks at
// each idle upstream once a second without blocking (peerClosed). Shutdown
// ends it and waits for it.
func (s *Server) watchUpstreams() {
	defer s.bg.Done()
	t := time.NewTicker(upstreamCheckEvery)
	defer t.Stop()
	var conns []*conn
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		conns = conns[:0]
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for i, c := range conns {
			c.checkUpstream()
			conns[i] = nil
		}
	}
}

// checkUpstream closes the connection when nothing is owed on it and its
// broker has closed the upstream. It runs on the watcher's goroutine and
// touches only what is safe to share; closing the client socket wakes the
// request pump, which tears the connection down.
func (c *conn) checkUpstream() {
	if c.inflight.answering() {
		return // the response pump is reading the upstream: it sees a close itself
	}
	up := c.upstreamConn()
	if up == nil {
		return
	}
	gone, err := peerClosed(socketOf(up))
	if !gone {
		return
	}
	if c.setReason(reasonUpstreamClosed, err) {
		c.s.metrics.upstreamClose(reasonUpstreamClosed)
	}
	c.client.Close()
	up.Close()
}
