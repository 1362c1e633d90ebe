package app

import (
	"testing"

	"github.com/kafkaguard/kafkaguard/config"
)

// An empty upstream_tls.server_name checks the broker's certificate for
// the host kafkaguard dials, as a Kafka client would.
func TestUpstreamTLSServerName(t *testing.T) {
	for _, tc := range []struct {
		name, upstream, want string
	}{
		{"", "kafka-0.kafka-headless:9093", "kafka-0.kafka-headless"},
		{"", "127.0.0.1:19093", "127.0.0.1"},
		{"", "[::1]:19093", "::1"},
		{"broker.example", "127.0.0.1:19093", "broker.example"},
	} {
		if got := upstreamTLSFiles(&config.UpstreamTLS{ServerName: tc.name}, tc.upstream).ServerName; got != tc.want {
			t.Errorf("server_name %q, upstream %s: checks %q, want %q", tc.name, tc.upstream, got, tc.want)
		}
	}
}
