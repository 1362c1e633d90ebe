package framing

// Protocol is what the first four bytes of a connection look like.
type Protocol uint8

// The protocols Sniff tells apart.
const (
	// ProtoKafka is anything that is not recognisably another protocol; the
	// four bytes are then a size prefix, to be judged by CheckSize.
	ProtoKafka Protocol = iota
	// ProtoHTTP is an HTTP/1 request line or an HTTP/2 connection preface.
	ProtoHTTP
	// ProtoTLS is a TLS record (ClientHello) or an SSLv2-style hello sent to
	// a plaintext port.
	ProtoTLS
	// ProtoUnknown is never returned by Sniff; it is the zero-information
	// value for callers that have not sniffed yet.
	ProtoUnknown
)

// String returns "kafka", "http", "tls" or "unknown", suitable as a bounded
// metric label.
func (p Protocol) String() string {
	switch p {
	case ProtoKafka:
		return "kafka"
	case ProtoHTTP:
		return "http"
	case ProtoTLS:
		return "tls"
	}
	return "unknown"
}

// httpPrefixes are the first four bytes of the HTTP methods and responses a
// misdirected client sends, and the HTTP/2 preface ("PRI * HTTP/2.0").
// Read as a Kafka size each is over 1 GiB, so the classification only
// changes how a refusal is explained, never whether.
var httpPrefixes = [...][4]byte{
	{'G', 'E', 'T', ' '},
	{'P', 'O', 'S', 'T'},
	{'P', 'U', 'T', ' '},
	{'H', 'E', 'A', 'D'},
	{'H', 'T', 'T', 'P'},
	{'D', 'E', 'L', 'E'},
	{'O', 'P', 'T', 'I'},
	{'P', 'A', 'T', 'C'},
	{'C', 'O', 'N', 'N'},
	{'P', 'R', 'I', ' '},
}

// Sniff classifies the first four bytes of a connection. It returns
// ProtoHTTP for HTTP request lines, ProtoTLS for a TLS handshake record
// (0x16 0x03) or an SSLv2-style ClientHello (high bit set, message type 1),
// and ProtoKafka otherwise.
func Sniff(p [4]byte) Protocol {
	for _, h := range httpPrefixes {
		if p == h {
			return ProtoHTTP
		}
	}
	if p[0] == 0x16 && p[1] == 0x03 {
		return ProtoTLS
	}
	// SSLv2 record: two-byte length with the high bit set, then
	// CLIENT-HELLO (1), then the major version (0 or 2 for SSLv2, 3 for an
	// SSLv3/TLS hello in v2 framing).
	if p[0]&0x80 != 0 && p[2] == 0x01 && (p[3] == 0x00 || p[3] == 0x02 || p[3] == 0x03) {
		return ProtoTLS
	}
	return ProtoKafka
}
