package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/limits"
)

// A ban reaches the connections its source opened before it: the next
// offence on any of them is answered (the answer is owed) and then ends the
// connection, instead of the connection being answered for ever.
func TestBanReachesOlderConnections(t *testing.T) {
	h, _ := newAbuseHarness(t, limits.GateOptions{OffencesBeforeBan: 1, BanMin: time.Minute}, harnessOpts{})
	const src = "127.0.0.11"
	req := oversizedProduce(2 << 20)
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("big-producer"))
	older := served(t, h, src) // opened before the ban
	newer := served(t, h, src)
	produce := func(name string, c net.Conn, corr int32) {
		t.Helper()
		if _, err := c.Write(f.AppendRequest(nil, req, corr)); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
		resp := readResponseFrom(t, c, req, corr).(*kmsg.ProduceResponse)
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.MessageTooLarge.Code {
			t.Fatalf("%s: oversized Produce answered %d, want MESSAGE_TOO_LARGE", name, code)
		}
	}
	// Weight 0.25 each: the fourth earns the ban and ends the newer connection.
	for i := range 4 {
		produce("newer connection", newer, int32(10+i))
	}
	expectClosed(t, newer, 5*time.Second)
	onlyBan(t, h, src)

	// The older connection still does what it may: a valid request is served.
	if err := apiVersionsOn(older, 20); err != nil {
		t.Fatalf("older connection, valid request after the ban: %v", err)
	}
	// Its next offence gets the owed answer, and then the connection ends.
	produce("older connection", older, 21)
	expectClosed(t, older, 5*time.Second)
	if got := h.counter("kafkaguard_bans_total", nil); got != 1 {
		t.Errorf("bans_total = %v, want 1 (an offence of a banned source is no new ban)", got)
	}
}
