package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kafkaguard/kafkaguard/limits"
)

// logBuf collects a server's log lines (JSON) for a test to search.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the log lines holding every one of want.
func (l *logBuf) lines(want ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		ok := line != ""
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// saslHarness is a kfake cluster with SASL on (alice/alice-secret for PLAIN,
// SCRAM-SHA-256 and SCRAM-SHA-512) behind kafkaguard, its routes set to
// sasl: require when require is set, its log lines collected.
func saslHarness(t *testing.T, require bool, gate *limits.GateOptions) (*harness, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	h := newHarness(t, harnessOpts{brokers: 1, gate: gate,
		kfakeOpts: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser("PLAIN", "alice", "alice-secret"),
			kfake.Superuser("SCRAM-SHA-256", "alice", "alice-secret"), kfake.Superuser("SCRAM-SHA-512", "alice", "alice-secret")},
		mutate: func(o *Options) {
			for i := range o.Routes {
				o.Routes[i].SASLRequire = require
			}
			o.Logger = zerolog.New(logs).Level(zerolog.InfoLevel)
		}})
	return h, logs
}

// franz-go logs in through kafkaguard with PLAIN, SCRAM-SHA-256 and
// SCRAM-SHA-512 (SaslHandshake v1, SaslAuthenticate), produces and consumes,
// in both sasl modes: nothing is refused, and once the broker has accepted
// the login the connection's log lines name the principal, never the
// password.
func TestSaslClientsThroughKafkaguard(t *testing.T) {
	mechs := map[string]sasl.Mechanism{
		"PLAIN":         plain.Auth{User: "alice", Pass: "alice-secret"}.AsMechanism(),
		"SCRAM-SHA-256": scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism(),
		"SCRAM-SHA-512": scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism(),
	}
	for _, require := range []bool{false, true} {
		for name, mech := range mechs {
			t.Run(fmt.Sprintf("%s/require=%v", name, require), func(t *testing.T) {
				h, logs := saslHarness(t, require, nil)
				topic := "sasl-" + strings.ToLower(name)
				cl := h.client(kgo.SASL(mech), kgo.ConsumeTopics(topic), kgo.FetchMaxWait(100*time.Millisecond))
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("v")}).FirstErr(); err != nil {
					t.Fatalf("produce: %v", err)
				}
				fs := cl.PollRecords(ctx, 1)
				if err := fs.Err0(); err != nil || fs.NumRecords() != 1 {
					t.Fatalf("consume: %d records, %v", fs.NumRecords(), err)
				}
				if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 {
					t.Errorf("%v frames rejected:\n%s", n, logs)
				}
				family := map[bool]string{true: "plain", false: "scram"}[name == "PLAIN"]
				if n := h.counter("kafkaguard_sasl_logins_total", map[string]string{"mechanism": family, "result": "accepted"}); n < 1 {
					t.Errorf("sasl_logins_total{%s,accepted} = %v", family, n)
				}
				if len(logs.lines(`"sasl login accepted by the broker"`, `"principal":"alice"`, `"mechanism":`)) == 0 {
					t.Errorf("no login line naming the principal:\n%s", logs)
				}
				cl.Close()
				waitFor(t, 5*time.Second, "connections to close", func() bool { return h.srv.connCount() == 0 })
				if len(logs.lines(`"connection closed"`, `"principal":"alice"`)) == 0 {
					t.Errorf("no close line naming the principal:\n%s", logs)
				}
				if strings.Contains(logs.String(), "alice-secret") {
					t.Errorf("the password is in the log:\n%s", logs)
				}
			})
		}
	}
}

// On a sasl: require listener a client that has not logged in may send
// ApiVersions, SaslHandshake and SaslAuthenticate only, each at most
// max_unauthenticated_bytes by its length prefix. Anything else is an
// offence that closes the connection before the broker is dialled; a frame
// over the budget is refused on its first four bytes. A passthrough
// listener forwards the same Metadata (kfake, which requires SASL, then
// closes the connection).
func TestSaslRequireRefusesBeforeLogin(t *testing.T) {
	meta := kmsg.NewMetadataRequest()
	meta.Version = 7
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("pre-auth"))
	for _, tc := range []struct {
		name    string
		require bool
		send    []byte
		reason  string // "" = served, "forwarded" = reaches the broker
	}{
		{"metadata passthrough", false, f.AppendRequest(nil, &meta, 1), "forwarded"},
		{"metadata", true, f.AppendRequest(nil, &meta, 1), "unauthenticated"},
		{"apiversions", true, f.AppendRequest(nil, &kmsg.ApiVersionsRequest{Version: 3, ClientSoftwareName: "t", ClientSoftwareVersion: "1"}, 1), ""},
		// 64 KiB + 1 declared, nothing else sent: refused on the prefix.
		{"oversized prefix", true, binary.BigEndian.AppendUint32(nil, 64<<10+1), "sasl_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, logs := saslHarness(t, tc.require, nil)
			c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.reason == "forwarded" {
				expectClosed(t, c, 5*time.Second)
				if n := h.counter("kafkaguard_frames_rejected_total", nil); n != 0 || h.dials.Load() != 1 {
					t.Errorf("%v rejections, %d dials; want the request forwarded\n%s", n, h.dials.Load(), logs)
				}
				return
			}
			if tc.reason == "" {
				if _, err := readFrame(c); err != nil {
					t.Fatalf("not served: %v\n%s", err, logs)
				}
				return
			}
			start := time.Now()
			expectClosed(t, c, 5*time.Second)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("closed after %v: it waited for bytes it should not read", d)
			}
			if n := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": tc.reason}); n != 1 {
				t.Errorf("rejected{reason=%s} = %v, want 1\n%s", tc.reason, n, logs)
			}
			if n := h.dials.Load(); n != 0 {
				t.Errorf("the broker was dialled %d times for a refused request", n)
			}
		})
	}
}

// plainLoginV1 logs in on c with SaslHandshake v1 and SaslAuthenticate v1
// (PLAIN), as a Java client does, and reports the broker's error code, or
// an error when the broker closed instead of answering.
func plainLoginV1(t *testing.T, c net.Conn, user, pass string) (int16, error) {
	t.Helper()
	hs := kmsg.NewSASLHandshakeRequest()
	hs.Version, hs.Mechanism = 1, "PLAIN"
	resp, err := roundTripErr(c, &hs, 1)
	if err != nil || resp.(*kmsg.SASLHandshakeResponse).ErrorCode != 0 {
		t.Fatalf("handshake: %v %+v", err, resp)
	}
	auth := kmsg.NewSASLAuthenticateRequest()
	auth.Version, auth.SASLAuthBytes = 1, []byte("\x00"+user+"\x00"+pass)
	aresp, err := roundTripErr(c, &auth, 2)
	if err != nil {
		return 0, err
	}
	return aresp.(*kmsg.SASLAuthenticateResponse).ErrorCode, nil
}

// After the login a sasl: require connection is served like any other, and
// an offence it commits is logged and recorded with its principal: the ban
// it earns names alice, and stays by address. A failed login (wrong
// password) gets no principal and is no offence of kafkaguard's.
func TestSaslPrincipalInOffences(t *testing.T) {
	h, logs := saslHarness(t, true, &limits.GateOptions{OffencesBeforeBan: 1, BanMin: time.Minute})
	c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, err := plainLoginV1(t, c, "alice", "wrong"); err == nil && code == 0 {
		t.Fatal("a wrong password was accepted")
	}
	expectClosed(t, c, 5*time.Second)
	if bans := h.srv.Gate().ActiveBans(); bans != 0 {
		t.Fatalf("a failed login earned a ban")
	}

	c, err = net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if code, err := plainLoginV1(t, c, "alice", "alice-secret"); err != nil || code != 0 {
		t.Fatalf("login: error %d, %v", code, err)
	}
	meta := kmsg.NewMetadataRequest()
	meta.Version = 7
	if _, err := roundTripErr(c, &meta, 3); err != nil {
		t.Fatalf("Metadata after the login: %v", err)
	}
	// An offence: a frame over every limit and the 4 MiB drain ceiling.
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, 8<<20)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, 5*time.Second)
	bans := h.srv.Gate().Bans()
	if len(bans) != 1 || bans[0].Principal != "alice" || bans[0].Source.Addr().String() != "127.0.0.1" {
		t.Fatalf("bans %+v, want one of 127.0.0.1 naming alice", bans)
	}
	if len(logs.lines(`"refused client request"`, `"reason":"too_large"`, `"principal":"alice"`)) != 1 {
		t.Errorf("the refusal's log line does not name the principal:\n%s", logs)
	}
	if strings.Contains(logs.String(), "alice-secret") || strings.Contains(logs.String(), "wrong") {
		t.Errorf("a password is in the log:\n%s", logs)
	}
}

// OAUTHBEARER (or GSSAPI, or any mechanism kafkaguard does not count the
// rounds of) over SaslHandshake v1 on a sasl: require listener: the login
// is taken as done when, after a SaslAuthenticate answered with error 0,
// the client sends a request that is not SASL; that request is served (and
// was held to the budget). Before any such answer, the same request is
// refused.
func TestSaslRequireInfersUnknownRounds(t *testing.T) {
	fb := newFakeBroker(t, func(key, version int16, _ []byte) []byte {
		req := kmsg.RequestForKey(key)
		if req == nil {
			return nil
		}
		return encodeResponse(req.ResponseKind(), version)
	})
	for _, authenticate := range []bool{true, false} {
		t.Run(fmt.Sprintf("authenticated=%v", authenticate), func(t *testing.T) {
			h := newHarness(t, harnessOpts{upstreams: []string{fb.addr()},
				mutate: func(o *Options) { o.Routes[0].SASLRequire = true }})
			c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			hs := kmsg.NewSASLHandshakeRequest()
			hs.Version, hs.Mechanism = 1, "OAUTHBEARER"
			if _, err := roundTripErr(c, &hs, 1); err != nil {
				t.Fatal(err)
			}
			if authenticate {
				auth := kmsg.NewSASLAuthenticateRequest()
				auth.Version, auth.SASLAuthBytes = 1, []byte("n,,\x01auth=Bearer token\x01\x01")
				if _, err := roundTripErr(c, &auth, 2); err != nil {
					t.Fatal(err)
				}
			}
			meta := kmsg.NewMetadataRequest()
			meta.Version = 7
			_, err = roundTripErr(c, &meta, 3)
			if authenticate && err != nil {
				t.Fatalf("Metadata after an accepted OAUTHBEARER login: %v", err)
			}
			if !authenticate && err == nil {
				t.Fatal("Metadata served after a handshake alone")
			}
			if want := map[bool]float64{true: 0, false: 1}[authenticate]; h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "unauthenticated"}) != want {
				t.Errorf("unauthenticated refusals: want %v", want)
			}
		})
	}
}
