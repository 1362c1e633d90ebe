//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// On Linux the body of a large request stored whole is moved from the
// client socket into a kernel pipe with splice(2), and from the pipe to
// the broker the same way, so its bytes never pass through user space
// (issue 14): the pipe is the store. The pipe's bytes are reserved from
// the chunk pool as they arrive, like chunks (see forwardPiped). A frame
// cut through moves through a pipe the same way, a step at a time, each
// step's bytes reserved only while the pipe holds them (forwardCutPiped).
// The rest of a large response moves from the broker through a pipe of the
// same set to the client, a step at a time (relayPiped).

const (
	fSetPipeSz     = 1031 // F_SETPIPE_SZ
	fGetPipeSz     = 1032 // F_GETPIPE_SZ
	spliceMove     = 0x1  // SPLICE_F_MOVE
	spliceNonblock = 0x2  // SPLICE_F_NONBLOCK
	// maxPipesOpen bounds the pipes (two fds each) open at once in one
	// server; a frame that finds none left is stored in chunks instead,
	// a large response copied through a chunk.
	maxPipesOpen = 256
	// maxPipesFree bounds the empty pipes kept for the next frame; more
	// are closed as they come back.
	maxPipesFree = 16
)

// pipeMaxBytes is /proc/sys/fs/pipe-max-size, read once: the largest
// capacity an unprivileged process may give a pipe.
var pipeMaxBytes = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		return 1 << 20
	}
	n := 0
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return max(n, 4096)
})

// pipe is one kernel pipe: r and w its read and write ends, size its
// capacity in bytes, held the bytes in it. It is owned by the pump (request
// or response) that took it, or by the free list.
type pipe struct {
	r, w int
	size int
	held int
}

func (p *pipe) close() {
	syscall.Close(p.r)
	syscall.Close(p.w)
}

// grow sets the capacity to at least n bytes, as the kernel allows (up to
// pipeMaxBytes; less when the user's pipe pages are spent, fs.pipe-user-
// pages-soft), and records what it got. The pipe must be empty.
func (p *pipe) grow(n, limit int) {
	n = min(n, pipeMaxBytes())
	if limit > 0 {
		n = min(n, limit)
	}
	if p.size >= n {
		return
	}
	got, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(p.w), fSetPipeSz, uintptr(n))
	if e == 0 {
		p.size = int(got)
	}
}

// pipes is a server's bounded set of pipes: open counts every pipe not yet
// closed (taken or free), free keeps at most maxPipesFree empty ones.
type pipes struct {
	mu     sync.Mutex
	free   []*pipe
	closed bool
	open   atomic.Int64
	max    int // the bound on open; 0 is maxPipesOpen (tests lower it)
}

// take returns an empty pipe of at least n bytes' capacity if the kernel
// allows one that large, or nil when maxPipesOpen are open or the kernel
// refuses a new one (out of fds).
func (ps *pipes) take(n, limit int) *pipe {
	ps.mu.Lock()
	var p *pipe
	if k := len(ps.free); k > 0 {
		p = ps.free[k-1]
		ps.free[k-1] = nil
		ps.free = ps.free[:k-1]
	}
	ps.mu.Unlock()
	if p == nil {
		bound := int64(maxPipesOpen)
		if ps.max > 0 {
			bound = int64(ps.max)
		}
		if ps.open.Add(1) > bound {
			ps.open.Add(-1)
			return nil
		}
		var fds [2]int
		if err := syscall.Pipe2(fds[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
			ps.open.Add(-1)
			return nil
		}
		p = &pipe{r: fds[0], w: fds[1]}
		if got, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(p.w), fGetPipeSz, 0); e == 0 {
			p.size = int(got)
		}
	}
	p.grow(n, limit)
	return p
}

// put gives back a pipe: an empty one is kept for the next frame while the
// free list has room and the server runs; one that still holds bytes (a
// frame cut short) or any other is closed.
func (ps *pipes) put(p *pipe) {
	if p == nil {
		return
	}
	if p.held == 0 {
		ps.mu.Lock()
		if !ps.closed && len(ps.free) < maxPipesFree {
			ps.free = append(ps.free, p)
			ps.mu.Unlock()
			return
		}
		ps.mu.Unlock()
	}
	p.close()
	ps.open.Add(-1)
}

// closeFree closes the free pipes and every pipe put back from now on;
// the server calls it once its connections have ended.
func (ps *pipes) closeFree() {
	ps.mu.Lock()
	free := ps.free
	ps.free, ps.closed = nil, true
	ps.mu.Unlock()
	for _, p := range free {
		p.close()
		ps.open.Add(-1)
	}
}

// spliceableTCP reports whether the request body may move through a pipe:
// spliceable's rule (both sockets plain TCP, never a TLS session) for a
// frame that may come before the dial — the broker's socket then is judged
// once dialled, and a dial that gives anything else is served from the pipe
// through a chunk.
func (c *conn) spliceableTCP() bool {
	if c.s.opts.storeWith() != storePipe || !isTCP(c.client) {
		return false
	}
	return c.upstream == nil || isTCP(c.upstream)
}

// errPipeFull is spliceIn's word that the pipe cannot take the socket's
// next bytes (its slots are full of small fragments, or the socket is at
// a TCP urgent mark): the caller reads them with a plain read instead.
var errPipeFull = errors.New("pipe full")

// splicer is a pump's splice state (requestSide.splice, responseSide.
// splice): the sockets' raw conns and the callbacks handed to them, made
// once per connection on its first piped frame so that a frame allocates
// nothing, and the arguments and results of the call under way.
type splicer struct {
	client          syscall.RawConn // the request pump's client (spliceIn)
	src, dst        syscall.RawConn // what spliceFrom reads, spliceOut writes
	srcConn         net.Conn        // the socket src was taken from
	dstConn         net.Conn        // the socket dst was taken from
	readFn, writeFn func(fd uintptr) bool
	fromFn          func(fd uintptr) bool
	p               *pipe
	n, room         int
	moved, want     int
	err             error
	// waited reports that the last spliceFrom or spliceOut waited for
	// its socket at least once (the response relay's blame; spliceIn
	// does not set it).
	waited bool
}

// init makes the callbacks and takes the client's raw conn.
func (sp *splicer) init(client *net.TCPConn) error {
	sp.initFns()
	if sp.client == nil {
		rc, err := client.SyscallConn()
		if err != nil {
			return err
		}
		sp.client = rc
	}
	return nil
}

func (sp *splicer) initFns() {
	if sp.readFn == nil {
		sp.readFn, sp.writeFn, sp.fromFn = sp.readStep, sp.writeStep, sp.fromStep
	}
}

// spliceIn moves up to n bytes from the client socket into p, waiting for
// the socket (under its read deadline) while it has none, and no more than
// room: it first asks the socket how many bytes it holds (FIONREAD), so the
// caller can reserve for them before they move (want > room: nothing moved,
// want is what it should reserve for). errPipeFull means the socket has
// bytes the pipe cannot take (its slots are full of small fragments).
func (sp *splicer) spliceIn(p *pipe, n, room int) (moved, want int, err error) {
	sp.p, sp.n, sp.room, sp.moved, sp.want, sp.err = p, n, room, 0, 0, nil
	err = sp.client.Read(sp.readFn)
	if err == nil {
		err = sp.err
	}
	p.held += sp.moved
	sp.p = nil
	return sp.moved, sp.want, err
}

func (sp *splicer) readStep(fd uintptr) bool {
	avail, e := ioctlInq(int(fd))
	if e != nil {
		sp.err = e
		return true
	}
	if avail == 0 {
		// Nothing queued: EOF, an error, a wait for bytes, or a TCP
		// urgent mark. A peek tells which without reserving or moving a
		// byte.
		switch r, e := peekByte(fd); {
		case e == syscall.EAGAIN:
			return false
		case e != 0:
			sp.err = e
		case r == 0:
			sp.err = io.ErrUnexpectedEOF
		case atUrgentMark(fd):
			// Bytes follow the mark, but no splice passes it and the
			// socket counts none past it: a plain read skips the urgent
			// byte, as every reader without SO_OOBINLINE does (a broker
			// too).
			sp.err = errPipeFull
		} // else a byte came since FIONREAD: the next step counts it
		return true
	}
	sp.want = min(avail, sp.n)
	if sp.want > sp.room {
		return true
	}
	m, e := syscall.Splice(int(fd), nil, sp.p.w, nil, sp.want, spliceMove|spliceNonblock)
	switch {
	case e == syscall.EAGAIN: // the socket holds bytes
		sp.err = errPipeFull
		return true
	case e != nil:
		sp.err = e
		return true
	}
	sp.moved = int(m)
	if m == 0 {
		sp.err = io.ErrUnexpectedEOF
	}
	return true
}

// spliceOut moves everything p holds to the socket dst, waiting for the
// socket under its write deadline.
func (sp *splicer) spliceOut(dst *net.TCPConn, p *pipe) error {
	sp.initFns()
	if sp.dstConn != dst {
		rc, err := dst.SyscallConn()
		if err != nil {
			return err
		}
		sp.dst, sp.dstConn = rc, dst
	}
	sp.p, sp.waited = p, false
	defer func() { sp.p = nil }()
	for p.held > 0 {
		sp.moved, sp.err = 0, nil
		err := sp.dst.Write(sp.writeFn)
		if err == nil {
			err = sp.err
		}
		if err != nil {
			return fmt.Errorf("splice: %w", err)
		}
		p.held -= sp.moved
	}
	return nil
}

func (sp *splicer) writeStep(fd uintptr) bool {
	m, e := syscall.Splice(sp.p.r, nil, int(fd), nil, sp.p.held, spliceMove|spliceNonblock)
	if e == syscall.EAGAIN {
		sp.waited = true
		return false
	}
	sp.moved, sp.err = int(max(m, 0)), e
	return true
}

// spliceFrom moves up to n bytes from the socket src into p, which must
// have room for them, waiting for the socket under its read deadline
// while it has none: what the socket holds, as one splice takes it. The
// end of the stream is io.ErrUnexpectedEOF: the caller wants n bytes more.
func (sp *splicer) spliceFrom(src *net.TCPConn, p *pipe, n int) (int, error) {
	sp.initFns()
	if sp.srcConn != src {
		rc, err := src.SyscallConn()
		if err != nil {
			return 0, err
		}
		sp.src, sp.srcConn = rc, src
	}
	sp.p, sp.n, sp.moved, sp.err, sp.waited = p, n, 0, nil, false
	err := sp.src.Read(sp.fromFn)
	if err == nil {
		err = sp.err
	}
	p.held += sp.moved
	sp.p = nil
	return sp.moved, err
}

func (sp *splicer) fromStep(fd uintptr) bool {
	m, e := syscall.Splice(int(fd), nil, sp.p.w, nil, sp.n, spliceMove|spliceNonblock)
	switch {
	case e == syscall.EAGAIN:
		sp.waited = true
		return false
	case e != nil:
		sp.err = e
	case m == 0:
		sp.err = io.ErrUnexpectedEOF
	default:
		sp.moved = int(m)
	}
	return true
}

// drainTo copies what p holds to w through buf, for a broker connection
// that is not a plain socket.
func drainTo(w io.Writer, p *pipe, buf []byte) error {
	for p.held > 0 {
		n, err := syscall.Read(p.r, buf[:min(len(buf), p.held)])
		if err != nil || n <= 0 {
			return fmt.Errorf("read pipe: %w", errors.Join(err, io.ErrUnexpectedEOF))
		}
		p.held -= n
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
	}
	return nil
}

func ioctlInq(fd int) (int, error) {
	var n int32
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// atUrgentMark reports whether the socket's next byte is where a TCP
// urgent byte (sent with MSG_OOB) is. There FIONREAD says 0 whatever
// follows, a splice moves nothing and a peek skips the urgent byte to
// show the next: no Kafka client sends one, but a hostile one could, and
// without this a store or cut step would wait out timeouts.frame, or spin
// on the peek. Asked only when a peek shows a byte FIONREAD did not count.
func atUrgentMark(fd uintptr) bool {
	var at int32
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.SIOCATMARK, uintptr(unsafe.Pointer(&at)))
	return e == 0 && at != 0
}

// peekByte looks at the socket's next byte without taking it: 1 when one
// is there, 0 at the end of the stream, EAGAIN while there is none.
func peekByte(fd uintptr) (int, syscall.Errno) {
	var b [1]byte
	for {
		r, _, e := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e != syscall.EINTR {
			return int(r), e
		}
	}
}
