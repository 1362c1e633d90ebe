//go:build linux

package proxy

import (
	"fmt"
	"net"
	"time"
)

// relayPiped relays the rest bytes of a large response left after its
// first ones, from the broker's socket into a kernel pipe of the server's
// set and from it to the client's, a splice in and one out for what the
// broker's socket holds, at most spliceStep at a time, in one loop: no
// byte passes through user space, and nothing restarts between steps
// (relayed as Go's TCPConn.ReadFrom of a step at a time, fetch cost about
// a sixth more CPU per byte: README, "Response relay in one splice loop").
//
// The deadlines measure progress, and are set only when they must change
// (a deadline set at every splice cost fetch a few per cent of CPU per byte):
// the client has timeouts.write to take each spliceStep bytes, its clock
// started again once reads inside the step have waited for the broker
// more than an eighth of it; the broker has timeouts.request for its
// reads, its clock started again at each step and once writes have waited
// for the client more than an eighth of it. So neither side loses more
// than an eighth of its time to the other's pace. A read and a write never
// wait at once, so a failed read is the broker's and a failed write the
// client's.
//
// It reports handled false, having moved nothing, when no pipe is to be
// had (maxPipesOpen reached, or out of fds) or a test asks for the copy
// (Options.responseCopy): relayLarge copies through a chunk.
func (c *conn) relayPiped(rest int64) (handled, ok bool) {
	if c.s.opts.responseCopy {
		return false, false
	}
	src, dst := c.upstream.(*net.TCPConn), c.client.(*net.TCPConn)
	p := c.s.pipes.take(spliceStep, c.s.opts.pipeLimit)
	if p == nil {
		return false, false
	}
	defer c.s.pipes.put(p) // closed unless it was emptied
	step := int64(min(spliceStep, p.size))
	sp := &c.resp.splice
	live := c.s.live()
	var stepLeft int64 // bytes more the client may be sent under its write deadline
	brokerDue := true  // the broker's read deadline is due to be set
	// The time each side has waited for the other since the other's
	// deadline was set: past an eighth of that timeout, it is set again.
	var brokerWaits, clientWaits time.Duration
	for rest > 0 {
		start := time.Now()
		if brokerDue || clientWaits > live.RequestTimeout/8 {
			c.upstreamDeadline(start.Add(live.RequestTimeout))
			brokerDue, clientWaits = false, 0
		}
		n, err := sp.spliceFrom(src, p, int(min(rest, step)))
		if err != nil {
			c.upstreamFailed(fmt.Errorf("relay response: %w", err))
			return true, false
		}
		read := time.Now()
		if sp.waited {
			brokerWaits += read.Sub(start)
		}
		if int64(n) > stepLeft || brokerWaits > live.WriteTimeout/8 {
			// A step begins with these bytes (they would take the one under
			// way past spliceStep, or the broker kept the client waiting):
			// the client has WriteTimeout from now for the next spliceStep,
			// the broker RequestTimeout from its next read. A reload
			// reaches the next step.
			live = c.s.live()
			dst.SetWriteDeadline(read.Add(live.WriteTimeout))
			stepLeft, brokerWaits, brokerDue = spliceStep, 0, true
		}
		rest -= int64(n)
		stepLeft -= int64(n)
		held := p.held
		err = sp.spliceOut(dst, p)
		if sp.waited {
			clientWaits += time.Since(read)
		}
		c.out.Add(int64(held - p.held))
		c.s.metrics.sent(held - p.held)
		if err != nil {
			c.clientWriteFailed(fmt.Errorf("relay response: %w", err))
			return true, false
		}
	}
	return true, true
}
