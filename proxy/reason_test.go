package proxy

import (
	"testing"

	"github.com/kafkaguard/kafkaguard/limits"
)

// Every reason has its own label (too_large answered and too_large closed
// share one, weighed apart), and every verdict of the policy has a reason
// that is an offence.
func TestReasonTable(t *testing.T) {
	seen := map[string]reason{}
	for r := reasonNone + 1; r < numReasons; r++ {
		label := r.String()
		if label == "" {
			t.Errorf("reason %d has no label", r)
		}
		if prev, dup := seen[label]; dup && !(prev == reasonTooLarge && r == reasonTooLargeAnswered) {
			t.Errorf("reasons %d and %d share the label %q", prev, r, label)
		}
		seen[label] = r
	}
	for _, why := range []limits.Reason{limits.ReasonTooLarge, limits.ReasonClientIDTooLong,
		limits.ReasonDeniedAPI, limits.ReasonUnknownAPI, limits.ReasonBadVersion} {
		r, ok := policyReasons[why]
		if !ok || r.String() != string(why) || reasons[r].class != weighsClosed {
			t.Errorf("policy reason %q -> %v (%v), class %d", why, r, ok, reasons[r].class)
		}
	}
	if reasons[reasonTooLargeAnswered].class != weighsRejection {
		t.Error("an answered Produce does not weigh as a rejection")
	}
}
