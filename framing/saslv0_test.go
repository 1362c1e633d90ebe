package framing

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// scramServer is the broker's half of SCRAM-SHA-512 (RFC 5802), enough to
// answer a real client's tokens with real replies that the client verifies.
type scramServer struct {
	pass, salt         string
	iter               int
	clientBare, sFirst string
}

func scramHMAC(key []byte, msg string) []byte {
	h := hmac.New(sha512.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// first answers client-first with server-first.
func (s *scramServer) first(tok []byte) ([]byte, error) {
	parts := strings.SplitN(string(tok), ",", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("client-first %q", tok)
	}
	s.clientBare = parts[2]
	cnonce := s.clientBare[strings.Index(s.clientBare, ",r=")+3:]
	s.sFirst = fmt.Sprintf("r=%sSRVNONCE,s=%s,i=%d", cnonce, base64.StdEncoding.EncodeToString([]byte(s.salt)), s.iter)
	return []byte(s.sFirst), nil
}

// final checks client-final's proof and answers server-final; a wrong
// proof is an error, upon which a v0 broker closes the connection.
func (s *scramServer) final(tok []byte) ([]byte, error) {
	msg := string(tok)
	i := strings.Index(msg, ",p=")
	if i < 0 {
		return nil, fmt.Errorf("client-final %q", tok)
	}
	proof, err := base64.StdEncoding.DecodeString(msg[i+3:])
	if err != nil {
		return nil, err
	}
	salted, err := pbkdf2.Key(sha512.New, s.pass, []byte(s.salt), s.iter, sha512.Size)
	if err != nil {
		return nil, err
	}
	authMsg := s.clientBare + "," + s.sFirst + "," + msg[:i]
	clientKey := scramHMAC(salted, "Client Key")
	stored := sha512.Sum512(clientKey)
	sig := scramHMAC(stored[:], authMsg)
	for j := range sig {
		sig[j] ^= clientKey[j]
	}
	if !hmac.Equal(sig, proof) {
		return nil, errors.New("bad proof")
	}
	return []byte("v=" + base64.StdEncoding.EncodeToString(scramHMAC(scramHMAC(salted, "Server Key"), authMsg))), nil
}

// step is one frame on the wire of a v0 exchange, in the order it travels.
type step struct {
	fromBroker bool
	frame      []byte // the whole frame, size prefix included
	want       SaslFrame
	raw        bool  // broker: want a raw reply
	err        error // client: want this error from Client
}

func sized(b []byte) []byte { return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...) }

func client(tok []byte) step { return step{frame: sized(tok), want: SaslToken} }
func reply(tok []byte) step  { return step{fromBroker: true, frame: sized(tok), raw: true} }

// request is a Metadata request: what a client sends once logged in.
func request(corr int32) step {
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("kg-test")).AppendRequest(nil, &kmsg.MetadataRequest{Version: 12}, corr)
	return step{frame: f, want: SaslRequest}
}

func response(corr int32) step {
	return step{fromBroker: true, frame: sized(binary.BigEndian.AppendUint32(nil, uint32(corr)))}
}

// runV0 plays the steps through a SaslV0 as a proxy's two pumps would: the
// client side asks Client after each frame's size, the broker side asks
// Broker before it would write the frame on. Requests must parse as
// request headers, tokens must be the bytes the client sent.
func runV0(t *testing.T, m SaslMechanism, code int16, steps []step) SaslV0 {
	t.Helper()
	s := NewSaslV0(m)
	if k, err := s.Client(); k != SaslWait || err != nil {
		t.Fatalf("before the handshake response: %v, %v", k, err)
	}
	if s.Broker(10) {
		t.Fatal("the handshake response taken for a raw reply")
	}
	s.Handshake(code)
	for i, st := range steps {
		size := int32(binary.BigEndian.Uint32(st.frame))
		if st.fromBroker {
			if raw := s.Broker(size); raw != st.raw {
				t.Fatalf("step %d: broker frame raw=%v, want %v", i, raw, st.raw)
			}
			continue
		}
		k, err := s.Client()
		if k != st.want || !errors.Is(err, st.err) {
			t.Fatalf("step %d: client frame %v, %v; want %v, %v", i, k, err, st.want, st.err)
		}
		if k == SaslRequest && err == nil {
			h, err := ParseRequestHeader(st.frame[SizeLen:], size, 100)
			if err != nil || h.APIKey != kmsg.Metadata.Int16() {
				t.Fatalf("step %d: request frame: %+v, %v", i, h, err)
			}
		}
	}
	return s
}

func TestSaslV0(t *testing.T) {
	ctx := context.Background()
	plainTok := plainToken(t, "", "alice", "alice-secret")

	// A real SCRAM-SHA-512 exchange: franz-go's client against the test
	// server, each verifying the other.
	scramSteps := func(pass string) (steps []step, ok bool) {
		sess, first, err := scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism().Authenticate(ctx, "b")
		if err != nil {
			t.Fatal(err)
		}
		srv := &scramServer{pass: pass, salt: "NaCl-salt", iter: 4096}
		sFirst, err := srv.first(first)
		if err != nil {
			t.Fatal(err)
		}
		_, cFinal, err := sess.Challenge(sFirst)
		if err != nil {
			t.Fatal(err)
		}
		steps = append(steps, client(first), reply(sFirst), client(cFinal))
		sFinal, err := srv.final(cFinal)
		if err != nil {
			return steps, false // the broker closes
		}
		if done, _, err := sess.Challenge(sFinal); !done || err != nil {
			t.Fatalf("the client refused server-final: %v", err)
		}
		return append(steps, reply(sFinal)), true
	}
	scramOK, ok := scramSteps("alice-secret")
	if !ok {
		t.Fatal("the right password was refused")
	}
	scramBad, ok := scramSteps("other")
	if ok {
		t.Fatal("a wrong password was accepted")
	}

	oauthTok := []byte("n,,\x01auth=Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.\x01\x01")
	oauthErr := []byte(`{"status":"invalid_token"}`)
	// Kerberos GSSAPI as the JDK speaks it: AP-REQ, AP-REP; empty token,
	// wrapped security-layer offer; wrapped answer, no reply.
	apReq, apRep := append([]byte{0x60, 0x82, 0x02, 0x10, 0x06, 0x09}, bytes.Repeat([]byte{0xa5}, 80)...), []byte{0x60, 0x70, 0x06, 0x09, 0x2a}
	wrapOffer, wrapAnswer := []byte{0x05, 0x04, 0x01, 0xff, 0, 0x0c, 0, 0, 1, 0, 0, 0}, []byte{0x05, 0x04, 0x00, 0xff, 0, 0x0c, 0, 0, 1, 0, 0, 0}
	gssapi := []step{client(apReq), reply(apRep), client(nil), reply(wrapOffer), client(wrapAnswer)}

	tooMany := []step{}
	for range MaxSaslTokens {
		tooMany = append(tooMany, client([]byte{1}), reply([]byte{2}))
	}
	tooMany = append(tooMany, step{frame: sized([]byte{1}), want: SaslRequest, err: ErrSaslOutOfTurn})

	for _, tc := range []struct {
		name       string
		mech       SaslMechanism
		code       int16
		steps      []step
		authed     bool
		done       bool
		wantTokens int
	}{
		{"plain", SaslPlain, 0, []step{client(plainTok), reply(nil), request(1), response(1)}, true, true, 1},
		{"plain pipelined", SaslPlain, 0, []step{client(plainTok), request(1), reply(nil), response(1)}, true, true, 1},
		{"plain refused", SaslPlain, 0, []step{client(plainTok)}, false, false, 1},
		{"scram", SaslScram, 0, append(scramOK, request(2), response(2)), true, true, 2},
		{"scram refused", SaslScram, 0, scramBad, false, false, 2},
		{"oauthbearer", SaslOAuthBearer, 0, []step{client(oauthTok), reply(nil), request(3), response(3)}, true, true, 1},
		{"oauthbearer waits", SaslOAuthBearer, 0, []step{client(oauthTok), {frame: request(3).frame, want: SaslWait}, reply(nil), request(3)}, true, true, 1},
		{"oauthbearer refused", SaslOAuthBearer, 0, []step{client(oauthTok), reply(oauthErr), client([]byte{1}), {fromBroker: true, frame: response(9).frame}}, false, false, 2},
		{"gssapi", SaslGSSAPI, 0, append(gssapi, request(4), response(4)), true, true, 3},
		{"gssapi refused", SaslGSSAPI, 0, gssapi, false, false, 3},
		{"unknown mechanism", SaslOther, 0, []step{client([]byte("x")), reply([]byte("y")), client([]byte("z")), request(5), response(5)}, true, true, 2},
		{"handshake refused", SaslPlain, 33, []step{request(6), response(6)}, false, true, 0},
		{"too many tokens", SaslGSSAPI, 0, tooMany, false, false, MaxSaslTokens},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := runV0(t, tc.mech, tc.code, tc.steps)
			if s.Authenticated() != tc.authed || s.Done() != tc.done || s.Tokens() != tc.wantTokens {
				t.Fatalf("authenticated %v done %v tokens %d; want %v %v %d",
					s.Authenticated(), s.Done(), s.Tokens(), tc.authed, tc.done, tc.wantTokens)
			}
		})
	}
}

// FuzzSaslV0 drives the state machine with any order of events and checks
// what must always hold: counts stay bounded, replies never outnumber
// tokens, and Authenticated and Done, once true, stay true.
func FuzzSaslV0(f *testing.F) {
	f.Add(uint8(SaslPlain), []byte{0, 0, 1, 2, 1, 2})
	f.Add(uint8(SaslScram), []byte{0, 0, 1, 2, 1, 2, 1})
	f.Add(uint8(SaslOAuthBearer), []byte{0, 0, 1, 1, 2, 1, 1})
	f.Add(uint8(SaslGSSAPI), []byte{0, 0, 1, 2, 1, 2, 1, 1, 2})
	f.Add(uint8(SaslOther), bytes.Repeat([]byte{1, 2}, 20))
	f.Fuzz(func(t *testing.T, mech uint8, ops []byte) {
		s := NewSaslV0(SaslMechanism(mech % 5))
		var authed, done bool
		for i, op := range ops {
			switch op % 4 {
			case 0:
				if i+1 < len(ops) {
					s.Handshake(int16(ops[i+1] % 2))
				}
			case 1:
				k, err := s.Client()
				if k > SaslWait || (err != nil && !errors.Is(err, ErrSaslOutOfTurn)) {
					t.Fatalf("client: %v, %v", k, err)
				}
			case 2:
				s.Broker(int32(op >> 2 & 1))
			}
			if s.tokens > MaxSaslTokens || s.replies > s.tokens || s.tokens < 0 {
				t.Fatalf("tokens %d replies %d", s.tokens, s.replies)
			}
			if authed && !s.Authenticated() || done && !s.Done() {
				t.Fatalf("op %d: authenticated %v->%v, done %v->%v", i, authed, s.Authenticated(), done, s.Done())
			}
			authed, done = s.Authenticated(), s.Done()
		}
	})
}
