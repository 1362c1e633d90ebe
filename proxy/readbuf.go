package proxy

import (
	"io"

	"github.com/kafkaguard/kafkaguard/limits"
)

// readBuf is a pooled chunk read into as much as the socket has, with
// chunk[r:w] read and not yet handled: so a small frame usually costs one
// read, and what is read past one frame is carried over to the next. Each
// pump owns one (its side's bytes); chunk is nil while it holds no chunk.
type readBuf struct {
	chunk []byte
	r, w  int
}

// buffered is how many bytes are read and not yet handled.
func (b *readBuf) buffered() int { return b.w - b.r }

// unread returns the bytes read and not yet handled.
func (b *readBuf) unread() []byte { return b.chunk[b.r:b.w] }

// fill reads from src until at least n bytes (n <= len(b.chunk)) are unread,
// as many as src has, first moving the unread bytes to the front when n
// would run past the chunk's end. It returns how many bytes it read.
func (b *readBuf) fill(src io.Reader, n int) (int, error) {
	if b.r+n > len(b.chunk) {
		b.w = copy(b.chunk, b.chunk[b.r:b.w])
		b.r = 0
	}
	got, err := io.ReadAtLeast(src, b.chunk[b.w:], n-(b.w-b.r))
	b.w += got
	return got, err
}

// take starts over with chunk, holding the n bytes at its start.
func (b *readBuf) take(chunk []byte, n int) { b.chunk, b.r, b.w = chunk, 0, n }

// consume marks n bytes handled; with none left, the next read starts at
// the front of the chunk.
func (b *readBuf) consume(n int) {
	b.r += n
	if b.r == b.w {
		b.r, b.w = 0, 0
	}
}

// release returns the chunk, if any, to pool and forgets it and its bytes.
func (b *readBuf) release(pool *limits.Pool) {
	if b.chunk != nil {
		pool.Put(b.chunk)
		b.chunk, b.r, b.w = nil, 0, 0
	}
}
