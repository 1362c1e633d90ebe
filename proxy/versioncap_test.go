package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KIP-951: kafkaguard does not rewrite the NodeEndpoints of Produce v10+,
// Fetch v16+ and share-group fetches, so it offers none of those versions,
// refuses a request that uses one anyway, and serves the versions below.
func TestKIP951VersionsCapped(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	av := roundTrip(t, h.addrs[0], kmsg.NewPtrApiVersionsRequest()).(*kmsg.ApiVersionsResponse)
	offered := map[int16]int16{}
	for _, k := range av.ApiKeys {
		offered[k.ApiKey] = k.MaxVersion
	}
	for _, tt := range []struct {
		key     kmsg.Key
		max     int16
		present bool
	}{
		{kmsg.Produce, 9, true},
		{kmsg.Fetch, 15, true},
		{kmsg.ShareFetch, 0, false},
		{kmsg.ShareAcknowledge, 0, false},
	} {
		got, ok := offered[tt.key.Int16()]
		if ok != tt.present || ok && got != tt.max {
			t.Errorf("ApiVersions offers %s: %v up to v%d; want offered %v up to v%d",
				kmsg.NameForKey(tt.key.Int16()), ok, got, tt.present, tt.max)
		}
	}

	for _, tt := range []struct {
		name    string
		key     kmsg.Key
		version int16
	}{
		{"Produce v10", kmsg.Produce, 10},
		{"Fetch v16", kmsg.Fetch, 16},
		{"ShareFetch v1", kmsg.ShareFetch, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "bad_version"})
			c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// A body is not needed: the version is judged from the header.
			body := make([]byte, 16)
			if _, err := c.Write(rawRequest(tt.key.Int16(), tt.version, 7, "kip951", body)); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c, 5*time.Second)
			waitFor(t, 2*time.Second, "bad_version counted", func() bool {
				return h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "bad_version"}) == before+1
			})
		})
	}

	// The versions just below the caps are served.
	cl := h.client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "kip951", Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatalf("produce at the capped version: %v", err)
	}
}
