package proxy

import (
	"fmt"
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

// A source table filled by an attacker does not lock anyone out, over real connections: 64 sources
// holding connections, then 64 banned sources, fill a table of 64, and a client from yet another address
// is still served each time.
func TestFullSourceTableServesNewcomers(t *testing.T) {
	const maxTracked = 64
	h, _ := newAbuseHarness(t, limits.GateOptions{OffencesBeforeBan: 1, BanMin: time.Minute, MaxConnsPerIP: 1,
		MaxTracked: maxTracked}, harnessOpts{})
	gate := h.srv.Gate()
	src := func(block, i int) string { return fmt.Sprintf("127.%d.0.%d", 20+block, i+1) }
	for i := range maxTracked {
		served(t, h, src(0, i)) // held open until the test ends
	}
	if gate.Tracked() != maxTracked {
		t.Fatalf("Tracked = %d, want the table full (%d)", gate.Tracked(), maxTracked)
	}
	served(t, h, "127.30.0.1").Close()
	if conn, _ := gate.EvictedPinned(); conn != 1 {
		t.Errorf("connected sources forgotten = %d, want 1", conn)
	}
	buf := make([]byte, 64)
	for i := range maxTracked {
		if err := badSizeFrom(src(1, i), h.addrs[0], buf); err != nil {
			t.Fatalf("offender %d: %v", i, err)
		}
	}
	waitFor(t, 5*time.Second, "a table of bans", func() bool { return gate.ActiveBans() == maxTracked })
	served(t, h, "127.30.0.2").Close()
	if _, ban := gate.EvictedPinned(); ban != 1 {
		t.Errorf("bans forgotten = %d, want 1", ban)
	}
}
