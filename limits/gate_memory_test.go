package limits

import (
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/kafkaguard/kafkaguard/config"
)

// maxBytesPerSource is the most heap one tracked source may hold with the longest client id and principal
// kept: the entry (240 bytes), its slot in its shard's map, the copy of its reason, and its client id and
// principal each clipped to maxStoredClientID bytes. Measured at 509 bytes (Go 1.26, amd64; 429 before the
// principal); the margin is about 10%, small enough that a second per-source table or a longer clip fails
// the test. README's memory budget quotes it.
const maxBytesPerSource = 560

// The source table at its bound: MaxTracked (the default, 50 000) IPv6 /64s, twice over, each offending
// with a client id and a principal past the clipping length, the worst an address spray can do. The heap it holds stays
// within MaxTracked x maxBytesPerSource (24 MB at the default), however many sources come.
func TestGateMemoryAtBound(t *testing.T) {
	if testing.Short() {
		t.Skip("100 000 sources; skipped with -short")
	}
	n := config.Default().Abuse.MaxTrackedSources
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g := newGate(t, GateOptions{OffencesBeforeBan: 5, MaxConnsPerIP: 10, RatePerSecond: 50, RateBurst: 50})
	pad := strings.Repeat("x", 2*maxStoredClientID)
	for i := range 2 * n {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(i >> 16), 5: byte(i >> 8), 6: byte(i), 15: 1})
		g.OffenceBy(a, Offender{ClientID: strconv.Itoa(i) + pad, Principal: "u" + strconv.Itoa(i) + pad}, "too_large", 1)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d sources tracked: heap +%d bytes, %d bytes a source", g.Tracked(), grew, grew/int64(n))
	if g.Tracked() != n {
		t.Errorf("Tracked = %d, want %d", g.Tracked(), n)
	}
	if grew > int64(n*maxBytesPerSource) {
		t.Errorf("heap grew by %d bytes, over %d x %d", grew, n, maxBytesPerSource)
	}
	runtime.KeepAlive(g)
}
