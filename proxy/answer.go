package proxy

import (
	"encoding/binary"
	"errors"
)

var errAnswerTooLarge = errors.New("local answer larger than limits.max_local_answer_bytes")

// answer is a response kafkaguard writes itself (the MESSAGE_TOO_LARGE
// answer to an oversized Produce), held in pooled chunks from the moment it
// is built until the response pump has written it: like request bytes, it
// is counted against the pool budget, and it is never larger than
// Options.MaxLocalAnswerBytes, whatever the request names. It is an
// io.Writer the answer is streamed into while the request is read, so no
// other copy of it exists.
//
// Owner: the request pump while it is built, then (through the in-flight
// queue) the response pump, which releases it once written; a connection
// that ends with it still queued releases it in serve (dropAnswers).
type answer struct {
	c      *conn
	chunks [][]byte
	n      int   // bytes written, the size prefix included
	held   int64 // pool bytes counted in c.localBytes once queued; 0 before
}

// Write appends p, taking chunks from the pool as needed. Past the limit it
// fails with errAnswerTooLarge; when the pool stays spent, with the pool's
// error.
func (a *answer) Write(p []byte) (int, error) {
	if a.n+len(p) > a.c.s.live().MaxLocalAnswerBytes {
		return 0, errAnswerTooLarge
	}
	cs := a.c.s.opts.Pool.ChunkBytes()
	written := 0
	for len(p) > 0 {
		off := a.n % cs
		if off == 0 && a.n/cs == len(a.chunks) {
			chunk, err := a.c.takeChunk()
			if err != nil {
				return written, err
			}
			a.chunks = append(a.chunks, chunk)
		}
		k := copy(a.chunks[len(a.chunks)-1][off:], p)
		p = p[k:]
		a.n += k
		written += k
	}
	return written, nil
}

// begin writes the size prefix's placeholder; seal fills it in.
func (a *answer) begin() error {
	_, err := a.Write([]byte{0, 0, 0, 0})
	return err
}

func (a *answer) seal() {
	binary.BigEndian.PutUint32(a.chunks[0], uint32(a.n-4))
}

// queued counts the answer's chunks against the connection's bound on
// queued answers (see awaitAnswers).
func (a *answer) queued() {
	a.held = int64(len(a.chunks) * a.c.s.opts.Pool.ChunkBytes())
	a.c.localBytes.Add(a.held)
}

// release puts the chunks back and, if the answer was queued, wakes a
// request pump waiting for queued answers to shrink.
func (a *answer) release() {
	pool := a.c.s.opts.Pool
	for i, ch := range a.chunks {
		pool.Put(ch)
		a.chunks[i] = nil
	}
	a.chunks = a.chunks[:0]
	if a.held != 0 {
		a.c.localBytes.Add(-a.held)
		a.held = 0
		select {
		case a.c.answerFreed <- struct{}{}:
		default:
		}
	}
}

// writeAnswer is the response pump writing a local answer in its turn, then
// releasing its chunks whatever the outcome.
func (c *conn) writeAnswer(a *answer) bool {
	cs := c.s.opts.Pool.ChunkBytes()
	ok := true
	for i, ch := range a.chunks {
		if ok = c.writeClient(ch[:min(cs, a.n-i*cs)]); !ok {
			break
		}
	}
	a.release()
	return ok
}

// awaitAnswers holds the request pump before its next frame while the
// connection's queued local answers hold more than MaxLocalAnswerBytes of
// the pool: a client that keeps sending oversized Produce requests and does
// not read the answers stops being read, instead of making kafkaguard hold
// answer after answer. The response pump writes them (each write bounded by
// timeouts.write), so the wait ends when enough are written, when the
// response side fails, or at shutdown. It reports whether to go on.
func (c *conn) awaitAnswers() bool {
	for c.localBytes.Load() > int64(c.s.live().MaxLocalAnswerBytes) {
		select {
		case <-c.answerFreed:
		case <-c.inflight.failed:
			return false
		case <-c.s.done:
			c.setReason(reasonShutdown, nil)
			return false
		}
	}
	return true
}

// dropAnswers releases the local answers still queued when the connection
// ends without delivering them (the response pump has ended).
func (c *conn) dropAnswers() {
	for _, p := range c.inflight.rest() {
		if p.local != nil {
			p.local.release()
		}
	}
}
