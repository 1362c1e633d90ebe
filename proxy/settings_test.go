package proxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/limits"
)

// A new limit reaches a connection already open: the next frame on the same connection is judged by it.
func TestSetSettingsJudgesNextFrameOnSameConnection(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	c, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 4
	if _, ok := roundTripOn(t, c, req, 1).(*kmsg.MetadataResponse); !ok {
		t.Fatal("no Metadata response before the change")
	}
	pol, err := limits.NewPolicy(limits.PolicyOptions{MaxRequestBytes: 1 << 20, MaxClientIDBytes: 256,
		PerAPI: map[int16]int32{req.Key(): 16}})
	if err != nil {
		t.Fatal(err)
	}
	st := *h.srv.live()
	st.Policy = pol
	if err := h.srv.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("kafkaguard-test"))
	if _, err := c.Write(f.AppendRequest(nil, req, 2)); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c, 5*time.Second)
	waitFor(t, 5*time.Second, "the refusal counted", func() bool {
		return h.counter("kafkaguard_frames_rejected_total", map[string]string{"reason": "too_large", "api": "Metadata"}) == 1
	})
	if got := h.srv.Options().Policy; got != pol {
		t.Error("Options() does not report the policy in force")
	}
}

func TestSetSettingsRefusesInvalid(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1})
	before := h.srv.live()
	st := *before
	st.IdleTimeout = 0
	if err := h.srv.SetSettings(st); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("SetSettings with a zero idle timeout = %v, want ErrInvalidOptions", err)
	}
	if h.srv.live() != before {
		t.Fatal("refused settings replaced the ones in force")
	}
}

// A route removed stops accepting and drains its connections; one added serves at once; the other
// routes never notice.
func TestAddAndRemoveRoute(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 2})
	keep, err := net.DialTimeout("tcp", h.addrs[0], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()
	gone, err := net.DialTimeout("tcp", h.addrs[1], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 4
	roundTripOn(t, keep, req, 1)
	roundTripOn(t, gone, req, 1)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.RemoveRoute(ctx, Route{Listen: h.addrs[1]}); err != nil {
		t.Fatalf("RemoveRoute: %v (its idle connection should have drained at once)", err)
	}
	expectClosed(t, gone, 2*time.Second)
	if c, err := net.DialTimeout("tcp", h.addrs[1], time.Second); err == nil {
		c.Close()
		t.Fatal("the removed listener still accepts")
	}
	if err := h.srv.RemoveRoute(ctx, Route{Listen: h.addrs[1]}); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("second RemoveRoute = %v, want ErrNoRoute", err)
	}
	meta := roundTripOn(t, keep, req, 2).(*kmsg.MetadataResponse)
	for _, b := range meta.Brokers {
		if net.JoinHostPort(b.Host, itoa(b.Port)) == h.addrs[1] {
			t.Errorf("metadata still advertises the removed listener %s", h.addrs[1])
		}
	}

	if err := h.srv.AddRoute(Route{Listen: "127.0.0.1:0", Upstream: h.cluster.ListenAddrs()[1]}); err != nil {
		t.Fatal(err)
	}
	addrs := h.srv.Addrs()
	if len(addrs) != 2 {
		t.Fatalf("Addrs after add = %v, want 2", addrs)
	}
	added := addrs[1].String()
	if _, ok := roundTrip(t, added, req).(*kmsg.MetadataResponse); !ok {
		t.Fatal("no Metadata response through the added listener")
	}
	meta = roundTripOn(t, keep, req, 3).(*kmsg.MetadataResponse)
	found := false
	for _, b := range meta.Brokers {
		found = found || net.JoinHostPort(b.Host, itoa(b.Port)) == added
	}
	if !found {
		t.Errorf("metadata through the kept listener does not advertise the added one %s: %+v", added, meta.Brokers)
	}
}

func itoa(p int32) string { return strconv.Itoa(int(p)) }
