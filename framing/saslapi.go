package framing

import "github.com/twmb/franz-go/pkg/kmsg"

// The SASL api keys, spelt once, from kmsg (see apis.go for the others):
// the proxy follows these requests and their responses to know when a
// client has logged in.
const (
	KeySaslHandshake    = int16(kmsg.SASLHandshake)
	KeySaslAuthenticate = int16(kmsg.SASLAuthenticate)
)
