package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// The splice store-and-forward relay (path D, --splice-sf) is a prototype,
// not kafkaguard: it measures what a store-and-forward design could reach
// if frame bodies stayed in the kernel. Per request it reads the 4-byte
// size into user space, splices the whole body from the client socket into
// a pipe (no copy to user space), and only once the frame is complete
// writes the size and splices the pipe to the broker. Responses are spliced
// straight through (io.Copy). It checks nothing but the size.

const (
	fSetPipeSz   = 1031 // F_SETPIPE_SZ
	spliceMove   = 0x1  // SPLICE_F_MOVE
	spliceNonblk = 0x2  // SPLICE_F_NONBLOCK
	maxSFFrame   = 1 << 20
)

var errFrameTooBig = errors.New("frame larger than the pipe")

func startSFRelay(upstream string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go acceptLoop(ln, func(c net.Conn) { sfConn(c.(*net.TCPConn), upstream) })
	return ln.Addr().String(), func() { ln.Close() }, nil
}

func sfConn(c *net.TCPConn, upstream string) {
	defer c.Close()
	upc, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	up := upc.(*net.TCPConn)
	defer up.Close()
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	if _, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(p[1]), fSetPipeSz, maxSFFrame); e != 0 {
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(c, up)
		c.CloseWrite()
		close(done)
	}()
	crc, err1 := c.SyscallConn()
	urc, err2 := up.SyscallConn()
	if err1 != nil || err2 != nil {
		return
	}
	var size [4]byte
	for range 1 << 40 {
		if _, err := io.ReadFull(c, size[:]); err != nil {
			break
		}
		n := int(binary.BigEndian.Uint32(size[:]))
		if n > maxSFFrame {
			break
		}
		if err := spliceIn(crc, p[1], n); err != nil {
			break
		}
		if _, err := up.Write(size[:]); err != nil {
			break
		}
		if err := spliceOut(urc, p[0], n); err != nil {
			break
		}
	}
	up.CloseWrite()
	<-done
}

// spliceIn moves n bytes from the socket behind rc into the pipe, waiting
// for readability through Go's poller.
func spliceIn(rc syscall.RawConn, pipeW, n int) error {
	for n > 0 {
		var moved int64
		var serr error
		err := rc.Read(func(fd uintptr) bool {
			moved, serr = syscall.Splice(int(fd), nil, pipeW, nil, n, spliceMove|spliceNonblk)
			return serr != syscall.EAGAIN
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("splice in: %w", serr)
		}
		if moved == 0 {
			return io.ErrUnexpectedEOF
		}
		n -= int(moved)
	}
	return nil
}

// spliceOut moves n bytes from the pipe to the socket behind rc.
func spliceOut(rc syscall.RawConn, pipeR, n int) error {
	for n > 0 {
		var moved int64
		var serr error
		err := rc.Write(func(fd uintptr) bool {
			moved, serr = syscall.Splice(pipeR, nil, int(fd), nil, n, spliceMove|spliceNonblk)
			return serr != syscall.EAGAIN
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("splice out: %w", serr)
		}
		n -= int(moved)
	}
	return nil
}
