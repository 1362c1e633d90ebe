//go:build linux

package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// With the readv store path (storeReadv) a frame larger than a chunk,
// stored whole, is read into pooled chunks as the chunk path reads it, but
// as many bytes at once as the socket holds: the socket is asked how many
// it holds (FIONREAD), that many bytes' worth of chunks are taken (never
// more than the frame still needs), and one readv(2) fills them. The chunk
// path makes one read per chunk; this makes two system calls per batch of
// socket data whatever the chunk size, and copies each byte once, as the
// chunk path does (issue 14: reads into 256 KiB chunks cost no more than
// the pipe on the 2-core machine).

// readvMax bounds the iovecs of one readv, and so the chunks taken for one
// read: with 32 KiB chunks, 1 MiB a call.
const readvMax = 32

// readver is a request pump's readv state (requestSide.readv): the
// client's raw conn and the callback handed to it, made once per
// connection on its first frame stored this way so that a frame allocates
// nothing, and the arguments and results of the call under way.
type readver struct {
	rc  syscall.RawConn
	fn  func(fd uintptr) bool
	iov []syscall.Iovec // at most readvMax; cleared after each frame so no chunk stays reachable
	// room is how many bytes the iovecs take; limit the most the frame
	// may take in one call (the bytes it still needs, and readvMax
	// chunks).
	room, limit int
	// queued is set when the socket held at least room bytes just before
	// chunks were taken for them: the next step reads without asking again.
	queued  bool
	n, want int
	err     error
}

// readvTCP reports whether a frame stored whole is read with readv: the
// store path in force is readv and the client is a plain TCP socket (a TLS
// session's bytes are decrypted by its Read).
func (c *conn) readvTCP() bool {
	return c.s.opts.storeWith() == storeReadv && isTCP(c.client)
}

// storeReadv reads the rest of a frame larger than a chunk, whose first
// bytes c.req.buf holds (all of them this frame's), into what is left of
// c.req.buf's chunk and as many further chunks (c.req.more) as it takes,
// and sets c.req.segments to the whole frame. Chunks are taken with
// getChunk, one at a time, as the chunk path takes them (so a spent pool
// evicts a slow frame, or ends this one as pool_exhausted), but only for
// bytes the socket says it holds: a frame that stalls holds the chunks of
// the bytes that arrived, the last of them partly filled, and none ahead.
func (c *conn) storeReadv(total int, deadline time.Time, api string) bool {
	rv := &c.req.readv
	if err := rv.init(c.client.(*net.TCPConn)); err != nil {
		c.readFailed(err, reasonFrameTimeout, api)
		return false
	}
	defer rv.forget()
	chunkAt := func(i int) []byte {
		if i < 0 {
			return c.req.buf.chunk
		}
		return c.req.more[i]
	}
	size := len(c.req.buf.chunk)
	remaining := total - c.req.buf.buffered()
	cur, filled := -1, c.req.buf.w // the chunk being filled (-1: c.req.buf's) and its bytes
	c.setReadDeadline(deadline)
	for remaining > 0 {
		if filled == len(chunkAt(cur)) && cur+1 < len(c.req.more) {
			cur, filled = cur+1, 0
		}
		// The iovecs: the room left in the chunk being filled, then the
		// chunks taken and still empty, no more than the frame needs.
		rv.iov, rv.room = rv.iov[:0], 0
		for i := cur; i < len(c.req.more) && rv.room < remaining; i++ {
			b := chunkAt(i)
			if i == cur {
				b = b[filled:]
			}
			if b = b[:min(len(b), remaining-rv.room)]; len(b) == 0 {
				continue
			}
			rv.iov = append(rv.iov, syscall.Iovec{Base: &b[0]})
			rv.iov[len(rv.iov)-1].SetLen(len(b))
			rv.room += len(b)
		}
		rv.limit = min(remaining, rv.room+(readvMax-len(rv.iov))*size)

		n, want, err := rv.read()
		if err != nil {
			c.readFailed(err, reasonFrameTimeout, api)
			return false
		}
		for got := rv.room; got < want; got += size {
			next, ok := c.getChunk()
			if !ok {
				return false
			}
			c.req.more = append(c.req.more, next)
		}
		rv.queued = want > 0
		remaining -= n
		c.in.Add(int64(n))
		for n > 0 {
			k := min(n, len(chunkAt(cur))-filled)
			if filled, n = filled+k, n-k; n > 0 {
				cur, filled = cur+1, 0
			}
		}
	}
	// Every chunk before the one being filled is full; none is after it.
	first := c.req.buf.chunk[c.req.buf.r:]
	if cur < 0 {
		first = c.req.buf.chunk[c.req.buf.r:filled]
	}
	c.req.segments = append(c.req.segments[:0], first)
	for i := 0; i <= cur; i++ {
		b := c.req.more[i]
		if i == cur {
			b = b[:filled]
		}
		c.req.segments = append(c.req.segments, b)
	}
	return true
}

// init takes the client's raw conn and makes the callback and the iovecs,
// once per connection.
func (rv *readver) init(client *net.TCPConn) error {
	if rv.rc == nil {
		rc, err := client.SyscallConn()
		if err != nil {
			return err
		}
		rv.rc, rv.fn, rv.iov = rc, rv.step, make([]syscall.Iovec, 0, readvMax)
	}
	return nil
}

// forget drops the iovecs' pointers into chunks given back to the pool,
// which may drop them.
func (rv *readver) forget() {
	clear(rv.iov[:cap(rv.iov)])
	rv.iov, rv.queued = rv.iov[:0], false
}

// read runs step on the client socket, under its read deadline: n bytes
// read into the iovecs, or want > room bytes the socket holds (up to
// limit) to take chunks for before it reads.
func (rv *readver) read() (n, want int, err error) {
	rv.n, rv.want, rv.err = 0, 0, nil
	if err = rv.rc.Read(rv.fn); err == nil {
		err = rv.err
	}
	return rv.n, rv.want, err
}

// step asks the socket how many bytes it holds (unless it has just told,
// and chunks were taken for them: queued). More than the iovecs take:
// it reads nothing and asks for chunks (want). Otherwise one readv fills
// the iovecs with what there is, or, when nothing is there, returns false
// so the runtime's poller waits for bytes (under the read deadline). With
// no room held and nothing queued, a one-byte peek tells an end of stream
// from a wait, without taking a chunk ahead of the bytes.
func (rv *readver) step(fd uintptr) bool {
	if !rv.queued {
		avail, err := ioctlInq(int(fd))
		if err != nil {
			rv.err = os.NewSyscallError("ioctl FIONREAD", err)
			return true
		}
		if want := min(avail, rv.limit); want > rv.room {
			rv.want = want
			return true
		}
	}
	rv.queued = false // after a wait, ask again
	var r int
	var e syscall.Errno
	if rv.room == 0 {
		r, e = peekByte(fd)
	} else {
		for e = syscall.EINTR; e == syscall.EINTR; {
			var n uintptr
			n, _, e = syscall.Syscall(syscall.SYS_READV, fd, uintptr(unsafe.Pointer(&rv.iov[0])), uintptr(len(rv.iov)))
			r = int(n)
		}
	}
	switch {
	case e == syscall.EAGAIN:
		return false
	case e != 0:
		rv.err = os.NewSyscallError("readv", e)
	case r == 0:
		rv.err = io.ErrUnexpectedEOF
	case rv.room > 0:
		rv.n = r
	case atUrgentMark(fd):
		// The peek skipped an urgent byte, which the socket's count
		// stops at: take a chunk now, and the readv after skips it too.
		rv.want = 1
	}
	// A peeked byte: the next step takes a chunk for it.
	return true
}
