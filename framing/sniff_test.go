package framing

import "testing"

func TestSniff(t *testing.T) {
	s := func(s string) [4]byte { return [4]byte([]byte(s)) }
	tests := []struct {
		name string
		in   [4]byte
		want Protocol
	}{
		{"GET", s("GET "), ProtoHTTP},
		{"POST", s("POST"), ProtoHTTP},
		{"PUT", s("PUT "), ProtoHTTP},
		{"HEAD", s("HEAD"), ProtoHTTP},
		{"HTTP response", s("HTTP"), ProtoHTTP},
		{"DELETE", s("DELE"), ProtoHTTP},
		{"OPTIONS", s("OPTI"), ProtoHTTP},
		{"PATCH", s("PATC"), ProtoHTTP},
		{"CONNECT", s("CONN"), ProtoHTTP},
		{"HTTP/2 preface", s("PRI "), ProtoHTTP},
		{"lowercase get is not HTTP", s("get "), ProtoKafka},
		{"TLS 1.0 record", [4]byte{0x16, 0x03, 0x01, 0x02}, ProtoTLS},
		{"TLS 1.2 record", [4]byte{0x16, 0x03, 0x03, 0x00}, ProtoTLS},
		{"SSLv2 hello, TLS version", [4]byte{0x80, 0x2e, 0x01, 0x03}, ProtoTLS},
		{"SSLv2 hello, SSLv2 version", [4]byte{0x80, 0x2e, 0x01, 0x00}, ProtoTLS},
		{"0x16 0x02 is a size", [4]byte{0x16, 0x02, 0x01, 0x00}, ProtoKafka},
		{"high bit without hello", [4]byte{0x80, 0x2e, 0x02, 0x03}, ProtoKafka},
		{"small kafka size", [4]byte{0, 0, 0, 42}, ProtoKafka},
		{"max int32", [4]byte{0x7f, 0xff, 0xff, 0xff}, ProtoKafka},
		{"minus one", [4]byte{0xff, 0xff, 0xff, 0xff}, ProtoKafka},
		{"zero", [4]byte{}, ProtoKafka},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sniff(tt.in); got != tt.want {
				t.Fatalf("Sniff(% x) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestProtocolString(t *testing.T) {
	tests := []struct {
		p    Protocol
		want string
	}{
		{ProtoKafka, "kafka"},
		{ProtoHTTP, "http"},
		{ProtoTLS, "tls"},
		{ProtoUnknown, "unknown"},
		{Protocol(200), "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.p.String(); got != tt.want {
				t.Fatalf("%d.String() = %q, want %q", tt.p, got, tt.want)
			}
		})
	}
}
