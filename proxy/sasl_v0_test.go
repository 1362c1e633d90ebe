package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/framing"
	"github.com/kafkaguard/kafkaguard/limits"
)

// v0Broker is a few lines of broker that speaks the SASL exchange a
// SaslHandshake v0 starts, as Apache Kafka's SaslServerAuthenticator does
// (kfake speaks only v1): after the handshake response, header-less tokens
// from the client and header-less replies from the broker, then ordinary
// requests, each answered with an empty response of its kind. Per
// mechanism:
//
//   - PLAIN: one token "\x00user\x00pass"; user:secret is accepted with an
//     empty reply, anything else closes the connection (Kafka sends no
//     error frame in v0).
//   - GSSAPI: three tokens; the first two get a reply, the third none (the
//     JDK's Kerberos server completes with a null challenge), and the
//     client goes on to requests.
//   - X-ENDLESS: every token gets a reply, for ever (a mechanism kafkaguard
//     does not know, driven past framing.MaxSaslTokens).
type v0Broker struct {
	*testBroker
	tokens chan []byte // every raw token received, for the test to check
}

func newV0Broker(t *testing.T) *v0Broker {
	t.Helper()
	b := &v0Broker{tokens: make(chan []byte, 64)}
	b.testBroker = listenBroker(t, b.serve)
	return b
}

func readFrame(c net.Conn) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var sz [4]byte
	if _, err := io.ReadFull(c, sz[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(sz[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	return b, err
}

func writeFrame(c net.Conn, b []byte) error {
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
	if err == nil {
		_, err = c.Write(b)
	}
	return err
}

func (b *v0Broker) serve(c net.Conn) {
	defer c.Close()
	mech, tokens := "", 0
	for {
		req, err := readFrame(c)
		if err != nil {
			return
		}
		if mech != "" { // a raw token
			b.tokens <- req
			tokens++
			switch {
			case mech == "PLAIN":
				if !bytes.Equal(req, []byte("\x00user\x00secret")) {
					return
				}
				mech = ""
				if writeFrame(c, nil) != nil {
					return
				}
			case mech == "GSSAPI" && tokens < 3:
				if writeFrame(c, fmt.Appendf(nil, "challenge-%d", tokens)) != nil {
					return
				}
			case mech == "GSSAPI":
				mech = "" // complete: no reply
			case mech == "X-ENDLESS":
				if writeFrame(c, []byte("more")) != nil {
					return
				}
			}
			continue
		}
		if len(req) < 10 {
			return
		}
		key := int16(binary.BigEndian.Uint16(req))
		version := int16(binary.BigEndian.Uint16(req[2:]))
		kreq := kmsg.RequestForKey(key)
		if kreq == nil {
			return
		}
		kreq.SetVersion(version)
		off := 10 + max(int(int16(binary.BigEndian.Uint16(req[8:]))), 0)
		if kreq.IsFlexible() && off < len(req) {
			_, w := binary.Uvarint(req[off:])
			off += max(w, 0)
		}
		resp := kreq.ResponseKind()
		resp.SetVersion(version)
		if key == int16(kmsg.SASLHandshake) {
			hs := kmsg.NewSASLHandshakeRequest()
			hs.SetVersion(version)
			if err := hs.ReadFrom(req[off:]); err != nil {
				return
			}
			r := resp.(*kmsg.SASLHandshakeResponse)
			r.SupportedMechanisms = []string{"PLAIN", "GSSAPI", "X-ENDLESS"}
			if hs.Mechanism != "PLAIN" && hs.Mechanism != "GSSAPI" && hs.Mechanism != "X-ENDLESS" {
				r.ErrorCode = 33 // UNSUPPORTED_SASL_MECHANISM
			} else if version == 0 {
				mech, tokens = hs.Mechanism, 0
			}
		}
		out := append([]byte(nil), req[4:8]...)
		if kreq.IsFlexible() && key != int16(kmsg.ApiVersions) {
			out = append(out, 0)
		}
		if writeFrame(c, resp.AppendTo(out)) != nil {
			return
		}
	}
}

// v0Login runs a scripted v0 login on c: SaslHandshake v0 naming mech, then
// the raw tokens, reading the raw replies the broker sends (want lists
// them; "" = none for that token), then ApiVersions v0 as the first
// ordinary request.
func v0Login(t *testing.T, c net.Conn, mech string, tokens [][]byte, want []string) error {
	t.Helper()
	hs := kmsg.NewSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 0, mech
	resp, err := roundTripErr(c, &hs, 1)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if code := resp.(*kmsg.SASLHandshakeResponse).ErrorCode; code != 0 {
		return fmt.Errorf("handshake: error %d", code)
	}
	for i, tok := range tokens {
		if err := writeFrame(c, tok); err != nil {
			return fmt.Errorf("token %d: %w", i, err)
		}
		if want[i] == "-" {
			continue
		}
		reply, err := readFrame(c)
		if err != nil {
			return fmt.Errorf("reply to token %d: %w", i, err)
		}
		if string(reply) != want[i] {
			return fmt.Errorf("reply to token %d: %q, want %q", i, reply, want[i])
		}
	}
	av := kmsg.NewApiVersionsRequest()
	av.Version = 0
	if _, err := roundTripErr(c, &av, 2); err != nil {
		return fmt.Errorf("ApiVersions after login: %w", err)
	}
	return nil
}

// roundTripErr is roundTripOn returning an error instead of failing.
func roundTripErr(c net.Conn, req kmsg.Request, corr int32) (kmsg.Response, error) {
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("kafkaguard-v0"))
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
		return nil, err
	}
	b, err := readFrame(c)
	if err != nil {
		return nil, err
	}
	if len(b) < 4 || int32(binary.BigEndian.Uint32(b)) != corr {
		return nil, fmt.Errorf("response %x: want correlation id %d", b, corr)
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	return resp, resp.ReadFrom(b[4:])
}

// A client that logs in with SaslHandshake v0 sends its tokens as bare
// [int32 len][bytes] frames with no request header. They are forwarded, and
// the broker's header-less replies relayed, never refused as malformed
// requests: ten logins in a row from one address, with bans after five
// offences, all succeed and earn nothing. (Before kafkaguard followed the
// v0 exchange, the first token was refused as a malformed header, an
// offence, and the fifth login earned a ban.)
func TestSaslV0LoginIsNoOffence(t *testing.T) {
	b := newV0Broker(t)
	h := newHarness(t, harnessOpts{upstreams: []string{b.addr()},
		gate: &limits.GateOptions{OffencesBeforeBan: 5, BanMin: time.Minute}})
	for i := range 10 {
		c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		err = v0Login(t, c, "PLAIN", [][]byte{[]byte("\x00user\x00secret")}, []string{""})
		c.Close()
		if err != nil {
			t.Fatalf("login %d: %v", i+1, err)
		}
		if tok := <-b.tokens; string(tok) != "\x00user\x00secret" {
			t.Fatalf("login %d: the broker got token %q", i+1, tok)
		}
	}
	// Ended, so a refusal made late would be counted by now.
	waitFor(t, 5*time.Second, "every connection to end", func() bool { return h.srv.connCount() == 0 })
	if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 {
		t.Errorf("%v frames rejected, want none", n)
	}
	if bans := h.srv.Gate().ActiveBans(); bans != 0 {
		t.Errorf("%d bans after ten v0 logins", bans)
	}
}

// The v0 exchanges of other shapes: GSSAPI, whose server completes its last
// token with no reply (the client goes straight on to requests); a login
// the broker refuses by closing; a token over max_unauthenticated_bytes,
// refused on its length prefix; and a sasl: require listener, which serves
// requests once the v0 exchange is done and refuses them before.
func TestSaslV0Exchanges(t *testing.T) {
	gss := [][]byte{[]byte("krb-1"), []byte("krb-2"), []byte("krb-3")}
	for _, tc := range []struct {
		name    string
		require bool
		run     func(t *testing.T, c net.Conn) error
		reason  string // the refusal, "" = none
	}{
		{"gssapi silent completion", false, func(t *testing.T, c net.Conn) error {
			return v0Login(t, c, "GSSAPI", gss, []string{"challenge-1", "challenge-2", "-"})
		}, ""},
		{"gssapi under require", true, func(t *testing.T, c net.Conn) error {
			return v0Login(t, c, "GSSAPI", gss, []string{"challenge-1", "challenge-2", "-"})
		}, ""},
		{"plain under require, then Metadata", true, func(t *testing.T, c net.Conn) error {
			if err := v0Login(t, c, "PLAIN", [][]byte{[]byte("\x00user\x00secret")}, []string{""}); err != nil {
				return err
			}
			meta := kmsg.NewMetadataRequest()
			meta.Version = 7
			_, err := roundTripErr(c, &meta, 3)
			return err
		}, ""},
		{"wrong password", false, func(t *testing.T, c net.Conn) error {
			err := v0Login(t, c, "PLAIN", [][]byte{[]byte("\x00user\x00wrong")}, []string{""})
			if err == nil {
				return fmt.Errorf("a wrong password logged in")
			}
			return nil
		}, ""},
		{"oversized token", false, func(t *testing.T, c net.Conn) error {
			hs := kmsg.NewSASLHandshakeRequest()
			hs.Version, hs.Mechanism = 0, "PLAIN"
			if _, err := roundTripErr(c, &hs, 1); err != nil {
				return err
			}
			if _, err := c.Write(binary.BigEndian.AppendUint32(nil, 64<<10+1)); err != nil {
				return err
			}
			expectClosed(t, c, 2*time.Second)
			return nil
		}, "sasl_too_large"},
		{"more tokens than any mechanism takes", false, func(t *testing.T, c net.Conn) error {
			hs := kmsg.NewSASLHandshakeRequest()
			hs.Version, hs.Mechanism = 0, "X-ENDLESS"
			if _, err := roundTripErr(c, &hs, 1); err != nil {
				return err
			}
			for i := range framing.MaxSaslTokens {
				if err := writeFrame(c, []byte("tok")); err != nil {
					return err
				}
				if reply, err := readFrame(c); err != nil || string(reply) != "more" {
					return fmt.Errorf("token %d: reply %q, %v", i+1, reply, err)
				}
			}
			if err := writeFrame(c, []byte("tok")); err != nil {
				return err
			}
			expectClosed(t, c, 2*time.Second)
			return nil
		}, "malformed_sasl"},
		{"metadata before the login under require", true, func(t *testing.T, c net.Conn) error {
			meta := kmsg.NewMetadataRequest()
			meta.Version = 7
			if _, err := roundTripErr(c, &meta, 1); err == nil {
				return fmt.Errorf("served before the login")
			}
			return nil
		}, "unauthenticated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newV0Broker(t)
			h := newHarness(t, harnessOpts{upstreams: []string{b.addr()},
				gate:   &limits.GateOptions{OffencesBeforeBan: 5, BanMin: time.Minute},
				mutate: func(o *Options) { o.Routes[0].SASLRequire = tc.require }})
			c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := tc.run(t, c); err != nil {
				t.Fatal(err)
			}
			c.Close()
			waitFor(t, 5*time.Second, "the connection to end", func() bool { return h.srv.connCount() == 0 })
			want := 0.0
			if tc.reason != "" {
				want = 1
			}
			if n := h.counter("kafkaguard_frames_rejected_total", nil); n != want {
				t.Errorf("%v frames rejected, want %v", n, want)
			}
			if tc.reason != "" {
				if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": tc.reason}); n != 1 {
					t.Errorf("rejected{reason=%s} = %v, want 1", tc.reason, n)
				}
			}
		})
	}
}

// Whatever a client sends after a SaslHandshake v0, kafkaguard neither
// panics nor leaks a chunk: random frames of random sizes (some over the
// budget, some negative, some cut short) after an accepted handshake each
// end in a forwarded token, a refusal or a close. The harness checks the
// pool is empty at the end.
func TestSaslV0HostileFrames(t *testing.T) {
	b := newV0Broker(t)
	h := newHarness(t, harnessOpts{upstreams: []string{b.addr()},
		mutate: func(o *Options) { o.Routes[0].SASLRequire = true; o.FrameTimeout = 300 * time.Millisecond }})
	rng := rand.New(rand.NewPCG(12, 10))
	for i := range 40 {
		c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		hs := kmsg.NewSASLHandshakeRequest()
		hs.Version, hs.Mechanism = 0, []string{"PLAIN", "GSSAPI", "X-ENDLESS"}[i%3]
		if _, err := roundTripErr(c, &hs, 1); err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		for range 1 + rng.IntN(4) {
			size := []int32{int32(rng.IntN(100)), 64<<10 + 1, -1, int32(rng.IntN(70 << 10))}[rng.IntN(4)]
			frame := binary.BigEndian.AppendUint32(nil, uint32(size))
			n := max(0, min(int(size), 80<<10))
			if rng.IntN(3) == 0 {
				n /= 2 // cut short
			}
			body := make([]byte, n)
			for j := range body {
				body[j] = byte(rng.Uint32())
			}
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := c.Write(append(frame, body...)); err != nil {
				break
			}
		}
		c.Close()
	}
	waitFor(t, 10*time.Second, "every connection to end", func() bool { return h.srv.connCount() == 0 })
}
