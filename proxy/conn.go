package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkaguard/kafkaguard/framing"
)

// conn is one client connection and, once its first request is allowed, the
// upstream connection behind it. The goroutine that runs serve reads
// requests (the request pump) and owns req; a second goroutine writes
// responses back (the response pump) and owns resp, while any requests are
// in flight, and ends when none have been for a second (see inflight).
// serve waits for it. What both pumps or other goroutines (Shutdown, the
// upstream watcher, another connection evicting this one) touch is above
// the halves, each with its own guard.
type conn struct {
	s      *Server
	r      *route
	client net.Conn
	ip     netip.Addr
	id     uint64
	log    zerolog.Logger
	opened time.Time

	// On a TLS listener client is a *tlsSocket over the socket (set before
	// serve starts, never changed; raw() is the socket), and sniff keeps
	// the first bytes the client sent, to name a failed handshake (owned by
	// the handshake, serve's goroutine). nil on a plaintext listener.
	sniff *firstBytesConn

	// upstream is nil until the first request is allowed. The request
	// pump sets it once (under upMu) before the first enqueue, so the
	// response pump reads it freely; any other goroutine (Shutdown, the
	// upstream watcher) reads it through upstreamConn. upMu is this
	// connection's own and is never held across I/O or with another lock.
	upstream net.Conn
	upMu     sync.Mutex
	aborted  bool     // abort ran: a dial completing later closes what it dialled (upMu)
	inflight inflight // requests in flight, and the response pump that answers them
	// drainBy, when non-zero, is the unix-ns deadline after which the
	// response pump stops waiting for the broker (the client ended cleanly
	// and has requests in flight); it caps the pump's own read deadlines.
	drainBy atomic.Int64

	// localBytes is the pool bytes held by local answers queued and not yet
	// written (added by the request pump, taken off by whichever releases
	// them); answerFreed (cap 1, made with the first answer) tells a request
	// pump waiting in awaitAnswers that it shrank.
	localBytes  atomic.Int64
	answerFreed chan struct{}

	in, out atomic.Int64 // bytes read from and written to the client

	// frameBusy is set while a frame is being read, so a drain interrupt
	// lets it finish instead of cutting it.
	frameBusy atomic.Bool
	// holdSince is when the frame being read, which holds pool chunks,
	// started (unix ns); 0 between frames and while a frame waits on the
	// broker rather than the client. Read by evictSlowest.
	holdSince atomic.Int64

	reasonMu  sync.Mutex
	reason    reason
	reasonErr error

	req  requestSide
	resp responseSide
	sasl saslState // the SASL login, followed by both pumps (sasl.go)
}

// requestSide is the state of the request pump, serve's goroutine, and of
// nothing else: scratch reused across frames so forwarding allocates
// nothing.
type requestSide struct {
	// lead takes the first read of a frame when nothing is carried over,
	// so an idle connection holds no chunk.
	lead [256]byte
	// buf is the pooled chunk of request bytes; nil between frames when
	// nothing is carried over.
	buf readBuf
	// more are the further chunks of a frame larger than one (or the
	// scratch of a rejected Produce).
	more [][]byte
	// segments are the pieces of the frame handed to one upstream write;
	// writev is the net.Buffers they are written through.
	segments [][]byte
	writev   net.Buffers
	// readDeadline is the client read deadline last set.
	readDeadline time.Time
	// frameDone is set once every byte of the frame being forwarded has
	// arrived: it then waits only on the broker.
	frameDone bool
	// cutDeadline is when a frame cut through must have arrived whole:
	// timeouts.frame from its start, moved on by each wait on the broker
	// before its last byte came, so the client is not charged for it.
	cutDeadline time.Time

	clientID string // client id of the last request header, for offences and logs
	frames   int64

	prod    *framing.ProduceReader // reads the body of the rejected Produce being drained
	prodReq framing.ProduceRequest

	splice splicer // moves large bodies through a kernel pipe (Linux; see forwardPiped)
	readv  readver // reads large bodies into several chunks at once (Linux; see storeReadv)
}

// responseSide is the state of the response pump goroutine (and of serve
// once that pump has ended).
type responseSide struct {
	// lead takes the first read of a response when nothing is carried
	// over, so a connection waiting on the broker holds no chunk.
	lead [512]byte
	// buf is the pooled chunk of upstream bytes read but not yet relayed;
	// nil when none are.
	buf readBuf
	// splice moves large responses through a kernel pipe (Linux; see
	// relayPiped).
	splice splicer
	// key is the api key of the response being relayed, for logs.
	key int16
}

func (s *Server) newConn(r *route, nc net.Conn, ip netip.Addr) *conn {
	id := s.nextID.Add(1)
	c := &conn{
		s: s, r: r, client: nc, ip: ip, id: id, opened: time.Now(),
	}
	if r.serverTLS != nil {
		c.client, c.sniff = newClientTLS(nc, r.serverTLS)
	}
	c.log = s.log.With().Uint64("conn", id).Str("client", nc.RemoteAddr().String()).
		Str("listener", r.listenAddr).Str("upstream", r.Upstream).Logger().Hook(principalHook{&c.sasl})
	return c
}

// setReason records why the connection ends; the first reason wins.
// It reports whether this was the first, so a connection ending for one
// reason is counted once, whatever fails after.
func (c *conn) setReason(r reason, err error) bool {
	c.reasonMu.Lock()
	defer c.reasonMu.Unlock()
	if c.reason != reasonNone {
		return false
	}
	c.reason, c.reasonErr = r, err
	return true
}

// closeReason returns the reason recorded first.
func (c *conn) closeReason() (reason, error) {
	c.reasonMu.Lock()
	defer c.reasonMu.Unlock()
	return c.reason, c.reasonErr
}

// serve runs the request pump, then tears the connection down in order:
// responses to requests in flight are delivered when the client ended
// cleanly, dropped when the connection ends in error.
func (c *conn) serve() {
	defer c.s.forget(c)
	if c.sniff != nil && !c.handshake() {
		c.client.Close()
		return
	}
	if ok, n := c.s.connLog.allow(); ok {
		c.log.Info().Int("suppressed", n).Msg("connection opened")
	}
	clean := c.requestLoop()
	if c.inflight.live() {
		switch {
		case c.upstream == nil:
		case clean:
			// Deliver what is still in flight (but wait no longer than
			// a write timeout) before closing. The client's end of stream
			// is not passed on as a half-close: a broker closes on EOF and
			// may drop the responses the client is waiting for.
			by := time.Now().Add(c.s.live().WriteTimeout)
			c.drainBy.Store(by.UnixNano())
			c.upstream.SetReadDeadline(by)
		default:
			c.upstream.Close()
			c.client.Close()
		}
	}
	c.inflight.finish()
	c.dropAnswers()
	c.resp.buf.release(c.s.opts.Pool)
	if c.upstream != nil {
		c.upstream.Close()
	}
	c.client.Close()
	if ok, n := c.s.connLog.allow(); ok {
		reason, cause := c.closeReason()
		ev := c.log.Info()
		if cause != nil {
			ev = ev.AnErr("cause", cause)
		}
		ev.Str("reason", reason.String()).Int64("bytes_in", c.in.Load()).Int64("bytes_out", c.out.Load()).
			Int64("frames", c.req.frames).Str("client_id", c.req.clientID).Dur("age_ms", time.Since(c.opened)).
			Int("suppressed", n).Msg("connection closed")
	}
}

// interrupt asks a connection to stop at its next frame boundary.
func (c *conn) interrupt() {
	if !c.frameBusy.Load() {
		c.client.SetReadDeadline(time.Now())
	}
}

// abort closes both sides now. It runs on Shutdown's goroutine and takes
// only the connection's own upMu, never the server's lock: Shutdown may
// call it with nothing held, and a dial still under way closes what it
// dials (see dial).
func (c *conn) abort() {
	c.setReason(reasonShutdown, nil)
	c.client.Close()
	c.upMu.Lock()
	c.aborted = true
	up := c.upstream
	c.upMu.Unlock()
	if up != nil {
		up.Close()
	}
}

// upstreamConn returns the upstream for goroutines other than the pumps.
func (c *conn) upstreamConn() net.Conn {
	c.upMu.Lock()
	defer c.upMu.Unlock()
	return c.upstream
}

// dial connects the upstream. It runs on the
// first allowed request, so a connection that never sends a valid Kafka
// header never reaches the broker.
//
// The dial ends early when Shutdown gives up on draining (s.kill), so a
// broker that does not accept cannot hold the process past its shutdown
// timeout.
func (c *conn) dial() error {
	ctx, cancel := context.WithTimeout(c.s.kill, c.s.live().DialTimeout)
	defer cancel()
	up, err := c.s.opts.Dial(ctx, "tcp", c.r.Upstream)
	if err == nil && c.r.UpstreamTLS != nil {
		up, err = c.dialTLS(up)
	}
	if err != nil {
		if c.s.kill.Err() == nil {
			c.s.metrics.dialError()
		}
		return err
	}
	c.upMu.Lock()
	aborted := c.aborted
	if !aborted {
		c.upstream = up
	}
	c.upMu.Unlock()
	if aborted {
		up.Close()
		return errAborted
	}
	return nil
}

var errAborted = errors.New("connection aborted by shutdown")

// classifyIO names an I/O failure for the close reason.
func classifyIO(err error) (timeout, eof bool) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true, false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true, false
	}
	return false, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
