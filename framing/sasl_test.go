package framing

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// handshakeBody is a SaslHandshake request body as kmsg writes it.
func handshakeBody(version int16, mech string) []byte {
	req := kmsg.SASLHandshakeRequest{Version: version, Mechanism: mech}
	return req.AppendTo(nil)
}

func TestParseSaslHandshakeRequest(t *testing.T) {
	long := strings.Repeat("M", MaxMechanismLen+1)
	for _, tc := range []struct {
		name    string
		body    []byte
		version int16
		want    string
		err     error
	}{
		{"plain v0", handshakeBody(0, "PLAIN"), 0, "PLAIN", nil},
		{"scram v1", handshakeBody(1, "SCRAM-SHA-512"), 1, "SCRAM-SHA-512", nil},
		{"longest", handshakeBody(1, long[1:]), 1, long[1:], nil},
		{"too long", handshakeBody(1, long), 1, "", ErrMalformedSasl},
		{"empty name", handshakeBody(0, ""), 0, "", ErrMalformedSasl},
		{"null name", []byte{0xff, 0xff}, 0, "", ErrMalformedSasl},
		{"truncated", handshakeBody(0, "PLAIN")[:5], 0, "", ErrMalformedSasl},
		{"trailing", append(handshakeBody(0, "PLAIN"), 0), 0, "", ErrMalformedSasl},
		{"no length", []byte{0}, 0, "", ErrMalformedSasl},
		{"version 2", handshakeBody(1, "PLAIN"), 2, "", ErrMalformedSasl},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSaslHandshakeRequest(tc.body, tc.version)
			if !errors.Is(err, tc.err) || string(got) != tc.want {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseMechanism(t *testing.T) {
	for name, want := range map[string]SaslMechanism{
		"PLAIN": SaslPlain, "SCRAM-SHA-256": SaslScram, "SCRAM-SHA-512": SaslScram,
		"OAUTHBEARER": SaslOAuthBearer, "GSSAPI": SaslGSSAPI, "plain": SaslOther, "X-CUSTOM": SaslOther, "": SaslOther,
	} {
		if got := ParseMechanism([]byte(name)); got != want {
			t.Errorf("%q: %v, want %v", name, got, want)
		}
	}
}

func TestSaslHandshakeError(t *testing.T) {
	for _, code := range []int16{0, 33, -1} {
		for _, v := range []int16{0, 1} {
			resp := kmsg.SASLHandshakeResponse{Version: v, ErrorCode: code, SupportedMechanisms: []string{"PLAIN", "SCRAM-SHA-256"}}
			got, err := SaslHandshakeError(resp.AppendTo(nil))
			if err != nil || got != code {
				t.Errorf("v%d code %d: got %d, %v", v, code, got, err)
			}
		}
	}
	if _, err := SaslHandshakeError([]byte{0}); !errors.Is(err, ErrMalformedSasl) {
		t.Errorf("one byte: %v", err)
	}
}

func TestSaslAuthenticateError(t *testing.T) {
	msg := "Authentication failed: Invalid username or password"
	for v := int16(0); v <= 2; v++ {
		for _, tc := range []struct {
			code int16
			msg  *string
			auth []byte
		}{
			{0, nil, []byte("v=dGVzdA==")},
			{0, nil, nil},
			{58, &msg, nil}, // SASL_AUTHENTICATION_FAILED
		} {
			resp := kmsg.SASLAuthenticateResponse{Version: v, ErrorCode: tc.code, ErrorMessage: tc.msg, SASLAuthBytes: tc.auth, SessionLifetimeMillis: 3600000}
			body := resp.AppendTo(nil)
			got, err := SaslAuthenticateError(body, v)
			if err != nil || got != tc.code {
				t.Fatalf("v%d code %d: got %d, %v", v, tc.code, got, err)
			}
			// Every truncation, and a trailing byte, is malformed: a cut
			// answer is never taken for a success.
			for i := range len(body) {
				if _, err := SaslAuthenticateError(body[:i], v); !errors.Is(err, ErrMalformedSasl) {
					t.Fatalf("v%d code %d, %d of %d bytes: %v", v, tc.code, i, len(body), err)
				}
			}
			if _, err := SaslAuthenticateError(append(body, 0), v); !errors.Is(err, ErrMalformedSasl) {
				t.Fatalf("v%d trailing byte: %v", v, err)
			}
		}
	}
	if _, err := SaslAuthenticateError([]byte{0, 0, 0, 0, 0, 0, 0, 0}, 3); !errors.Is(err, ErrMalformedSasl) {
		t.Fatalf("version 3: %v", err)
	}
}

func TestParseSaslAuthenticateRequest(t *testing.T) {
	tok := []byte("\x00alice\x00alice-secret")
	for v := int16(0); v <= 2; v++ {
		req := kmsg.SASLAuthenticateRequest{Version: v, SASLAuthBytes: tok}
		body := req.AppendTo(nil)
		got, err := ParseSaslAuthenticateRequest(body, v)
		if err != nil || !bytes.Equal(got, tok) {
			t.Fatalf("v%d: %q, %v", v, got, err)
		}
		if _, err := ParseSaslAuthenticateRequest(body[:len(body)-1], v); !errors.Is(err, ErrMalformedSasl) {
			t.Fatalf("v%d truncated: %v", v, err)
		}
	}
}

func plainToken(t testing.TB, zid, user, pass string) []byte {
	t.Helper()
	_, tok, err := plain.Auth{Zid: zid, User: user, Pass: pass}.AsMechanism().Authenticate(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func scramToken(t testing.TB, zid, user string) []byte {
	t.Helper()
	_, tok, err := scram.Auth{Zid: zid, User: user, Pass: "pw"}.AsSha512Mechanism().Authenticate(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSaslPrincipal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mech  SaslMechanism
		token []byte
		want  string
	}{
		{"plain", SaslPlain, plainToken(t, "", "alice", "alice-secret"), "alice"},
		{"plain authzid", SaslPlain, plainToken(t, "admin", "bob", "pw"), "bob"},
		{"plain utf-8", SaslPlain, plainToken(t, "", "jürgen", "pw"), "jürgen"},
		{"plain empty password", SaslPlain, []byte("\x00carol\x00"), "carol"},
		{"plain no password", SaslPlain, []byte("\x00carol"), ""},
		{"plain empty authcid", SaslPlain, []byte("\x00\x00pw"), ""},
		{"plain no nul", SaslPlain, []byte("carol"), ""},
		{"plain control char", SaslPlain, []byte("\x00ev\nil\x00pw"), ""},
		{"plain bad utf-8", SaslPlain, []byte("\x00\xff\xfe\x00pw"), ""},
		{"plain longest", SaslPlain, []byte("\x00" + strings.Repeat("u", MaxPrincipalLen) + "\x00pw"), strings.Repeat("u", MaxPrincipalLen)},
		{"plain too long", SaslPlain, []byte("\x00" + strings.Repeat("u", MaxPrincipalLen+1) + "\x00pw"), ""},
		{"scram", SaslScram, scramToken(t, "", "alice"), "alice"},
		{"scram escaped", SaslScram, scramToken(t, "z,=", "a,b=c"), "a,b=c"},
		{"scram token auth", SaslScram, []byte("n,,n=tok,r=abc,tokenauth=true"), "tok"},
		{"scram y flag", SaslScram, []byte("y,,n=dave,r=abc"), "dave"},
		{"scram channel binding", SaslScram, []byte("p=tls-unique,,n=dave,r=abc"), ""},
		{"scram bad escape", SaslScram, []byte("n,,n=a=2Xb,r=abc"), ""},
		{"scram cut escape", SaslScram, []byte("n,,n=ab=2,r=abc"), ""},
		{"scram no nonce", SaslScram, []byte("n,,n=dave"), ""},
		{"scram no name", SaslScram, []byte("n,,r=abc"), ""},
		{"scram empty name", SaslScram, []byte("n,,n=,r=abc"), ""},
		{"scram client-final", SaslScram, []byte("c=biws,r=abcdef,p=cHJvb2Y="), ""},
		{"scram longest escaped", SaslScram, []byte("n,,n=" + strings.Repeat("=2C", MaxPrincipalLen) + ",r=x"), strings.Repeat(",", MaxPrincipalLen)},
		{"scram too long", SaslScram, []byte("n,,n=" + strings.Repeat("u", MaxPrincipalLen+1) + ",r=x"), ""},
		{"oauthbearer", SaslOAuthBearer, []byte("n,,\x01auth=Bearer eyJhbGciOiJub25lIn0.e30.\x01\x01"), ""},
		{"gssapi", SaslGSSAPI, []byte{0x60, 0x82, 0x02, 0x10}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := SaslPrincipal(tc.mech, tc.token)
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if tc.mech == SaslPlain && got != "" && strings.Contains(got, "secret") {
				t.Fatalf("principal %q carries the password", got)
			}
		})
	}
}

func TestSaslParsersAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation bounds are checked without the race detector")
	}
	hs := handshakeBody(0, "SCRAM-SHA-256")
	auth := (&kmsg.SASLAuthenticateResponse{Version: 2, SASLAuthBytes: []byte("v=abc"), SessionLifetimeMillis: 1}).AppendTo(nil)
	tok := plainToken(t, "", "alice", "pw")
	first := scramToken(t, "", "a=b,c")
	for name, f := range map[string]func(){
		"handshake":    func() { ParseSaslHandshakeRequest(hs, 0) },
		"mechanism":    func() { ParseMechanism(hs[2:]) },
		"authenticate": func() { SaslAuthenticateError(auth, 2) },
		"plain":        func() { SaslPrincipal(SaslPlain, tok) },
		"scram":        func() { SaslPrincipal(SaslScram, first) },
	} {
		want := 0.0
		if name == "plain" || name == "scram" {
			want = 1 // the returned string, and nothing else
		}
		if got := testing.AllocsPerRun(100, f); got > want {
			t.Errorf("%s: %v allocations, want at most %v", name, got, want)
		}
	}
}

// FuzzSasl checks the SASL decoders on any bytes: no panic, results alias
// the input within it, names stay bounded, and a principal is printable.
func FuzzSasl(f *testing.F) {
	f.Add(handshakeBody(0, "PLAIN"), int16(0))
	f.Add((&kmsg.SASLAuthenticateResponse{Version: 2, SASLAuthBytes: []byte("v=x")}).AppendTo(nil), int16(2))
	f.Add((&kmsg.SASLAuthenticateRequest{Version: 1, SASLAuthBytes: []byte("\x00u\x00p")}).AppendTo(nil), int16(1))
	f.Add([]byte("n,a=z=2C,n=us=3Der,r=abc"), int16(0))
	f.Add([]byte("\x00alice\x00secret"), int16(0))
	f.Fuzz(func(t *testing.T, b []byte, version int16) {
		if m, err := ParseSaslHandshakeRequest(b, version); err == nil {
			if len(m) == 0 || len(m) > MaxMechanismLen || !bytes.Equal(m, b[2:]) {
				t.Fatalf("mechanism %q of %q", m, b)
			}
		}
		SaslHandshakeError(b)
		SaslAuthenticateError(b, version)
		if tok, err := ParseSaslAuthenticateRequest(b, version); err == nil && len(tok) > len(b) {
			t.Fatalf("token of %d bytes from %d", len(tok), len(b))
		}
		for _, m := range []SaslMechanism{SaslPlain, SaslScram, SaslOther} {
			p := SaslPrincipal(m, b)
			if p == "" {
				continue
			}
			if len(p) > MaxPrincipalLen || !printable([]byte(p)) {
				t.Fatalf("%v principal %q", m, p)
			}
			if m == SaslPlain && !bytes.Contains(b, []byte("\x00"+p+"\x00")) {
				t.Fatalf("plain principal %q is not the authcid of %q", p, b)
			}
		}
	})
}
