package proxy

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/framing"
)

// FindCoordinator error entries (node -1, host "", port -1) are not brokers:
// they pass through untouched, are not counted as unmapped brokers, and
// rewrite.unmapped_port does not give them a real port. Both the v0-3
// top-level form and the v4+ Coordinators array.
func TestFindCoordinatorErrorPassesThrough(t *testing.T) {
	const notAvailable = 15 // COORDINATOR_NOT_AVAILABLE
	broker := newFakeBroker(t, func(key, version int16, _ []byte) []byte {
		if key != framing.KeyFindCoordinator {
			return nil
		}
		r := kmsg.NewPtrFindCoordinatorResponse()
		r.ErrorCode, r.NodeID, r.Host, r.Port = notAvailable, -1, "", -1
		co := kmsg.NewFindCoordinatorResponseCoordinator()
		co.Key, co.ErrorCode, co.NodeID, co.Host, co.Port = "g", notAvailable, -1, "", -1
		r.Coordinators = append(r.Coordinators, co)
		return encodeResponse(r, version)
	})
	for _, tc := range []struct {
		name     string
		unmapped int
	}{{"no unmapped port", 0}, {"unmapped port", 9999}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{upstreams: []string{broker.addr()},
				mutate: func(o *Options) { o.UnmappedPort = tc.unmapped }})
			for _, v := range []int16{1, 3, 4, 5} {
				req := kmsg.NewPtrFindCoordinatorRequest()
				req.Version = v
				req.CoordinatorKey = "g"
				req.CoordinatorKeys = []string{"g"}
				resp := roundTrip(t, h.addrs[0], req).(*kmsg.FindCoordinatorResponse)
				if v < 4 {
					if resp.ErrorCode != notAvailable || resp.NodeID != -1 || resp.Host != "" || resp.Port != -1 {
						t.Errorf("v%d: got error %d node %d %q:%d, want the error entry untouched",
							v, resp.ErrorCode, resp.NodeID, resp.Host, resp.Port)
					}
					continue
				}
				if len(resp.Coordinators) != 1 {
					t.Fatalf("v%d: %d coordinators, want 1", v, len(resp.Coordinators))
				}
				co := resp.Coordinators[0]
				if co.ErrorCode != notAvailable || co.NodeID != -1 || co.Host != "" || co.Port != -1 {
					t.Errorf("v%d: got error %d node %d %q:%d, want the error entry untouched",
						v, co.ErrorCode, co.NodeID, co.Host, co.Port)
				}
			}
			if n := h.counter("kafkaguard_rewrite_unmapped_brokers_total", nil); n != 0 {
				t.Errorf("error entries counted as %v unmapped brokers, want 0", n)
			}
		})
	}
}

// The rewritten response is encoded into one buffer sized for the longest
// host kafkaguard advertises, which relayRewritten reserves from the pool:
// however much longer the advertised host is than the brokers', the output
// never reallocates (an extra copy outside the reservation).
func TestRewriteOutputDoesNotReallocate(t *testing.T) {
	long := strings.Repeat("h", 200) + ".proxy.example"
	s := &Server{routes: []*route{{advHost: long, advPort: 9092, upHost: "b", upPort: 9092}}, warnLog: newLogLimiter(1, 1)}
	rw := &rewriter{s: s}
	for _, v := range []int16{1, 9, 12} { // classic and flexible encodings
		r := kmsg.NewPtrMetadataResponse()
		for i := range 100 {
			b := kmsg.NewMetadataResponseBroker()
			b.NodeID, b.Host, b.Port = int32(i), "b", 9092
			r.Brokers = append(r.Brokers, b)
		}
		body := encodeResponse(r, v)
		head := make([]byte, 9) // size, correlation id, header tags
		_, addrs, err := framing.ResponseCost(framing.KeyMetadata, v, body)
		if err != nil {
			t.Fatal(err)
		}
		planned := len(head) + len(body) + rewriteSlack(addrs, rw.maxHostGrowth())
		out, err := rw.rewrite(framing.KeyMetadata, v, head, body, rewriteSlack(addrs, rw.maxHostGrowth()))
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if len(out) <= len(head)+len(body)+64 {
			t.Fatalf("v%d: output %d bytes: the hosts did not grow enough to test anything", v, len(out))
		}
		if cap(out) != planned {
			t.Errorf("v%d: output of %d bytes reallocated to cap %d, want the %d planned", v, len(out), cap(out), planned)
		}
	}
}
