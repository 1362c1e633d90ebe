package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/framing"
)

// testBroker is the plumbing the brokers of these tests share: a listener on
// 127.0.0.1:0 whose accepted connections each run serve in a goroutine, and
// a Close (also run at cleanup) that ends the listener, every connection and
// every goroutine.
type testBroker struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func listenBroker(t testing.TB, serve func(net.Conn)) *testBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBroker{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				serve(c)
			}()
		}
	}()
	t.Cleanup(b.Close)
	return b
}

func (b *testBroker) addr() string { return b.ln.Addr().String() }

// closeConns closes every connection the broker accepted, so requests still
// owed a response end (the broker "went away").
func (b *testBroker) closeConns() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.Close()
	}
}

// Close ends the listener and every connection, and waits for their
// goroutines.
func (b *testBroker) Close() {
	b.ln.Close()
	b.closeConns()
	b.wg.Wait()
}

// fakeBroker is a few lines of broker that answers every request with
// whatever its handler returns: the response body after the response header
// (nil: no answer, the request is swallowed). Tests use it for brokers that
// answer badly or hugely, which kfake will not.
type fakeBroker struct{ *testBroker }

// brokerHandler returns the response body for one request.
type brokerHandler func(key, version int16, body []byte) []byte

func newFakeBroker(t *testing.T, h brokerHandler) *fakeBroker {
	t.Helper()
	b := &fakeBroker{}
	b.testBroker = listenBroker(t, func(c net.Conn) { b.serve(c, h) })
	return b
}

func (b *fakeBroker) serve(c net.Conn, h brokerHandler) {
	defer c.Close()
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		var sz [4]byte
		if _, err := io.ReadFull(c, sz[:]); err != nil {
			return
		}
		req := make([]byte, binary.BigEndian.Uint32(sz[:]))
		if _, err := io.ReadFull(c, req); err != nil || len(req) < 10 {
			return
		}
		key := int16(binary.BigEndian.Uint16(req))
		version := int16(binary.BigEndian.Uint16(req[2:]))
		corr := req[4:8]
		idLen := int(int16(binary.BigEndian.Uint16(req[8:])))
		off := 10 + max(idLen, 0)
		flexible := false
		if r := kmsg.RequestForKey(key); r != nil {
			r.SetVersion(version)
			flexible = r.IsFlexible()
		}
		if flexible && off < len(req) {
			_, w := binary.Uvarint(req[off:]) // request header tags: none expected
			off += max(w, 0)
		}
		body := h(key, version, req[off:])
		if body == nil {
			continue
		}
		out := make([]byte, 4, 9+len(body))
		out = append(out, corr...)
		if flexible && key != framing.KeyAPIVersions {
			out = append(out, 0)
		}
		out = append(out, body...)
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// encodeResponse is a handler helper: the body of resp at version.
func encodeResponse(resp kmsg.Response, version int16) []byte {
	resp.SetVersion(version)
	return resp.AppendTo(nil)
}
