package proxy

import (
	"errors"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafkaguard/kafkaguard/limits"
)

// testIPv6Net is routed to lo for the tests that need many IPv6 sources: a documentation prefix, so
// nothing real is shadowed.
const testIPv6Net = "2001:db8:6b67::/48"

// routeIPv6 makes every address of testIPv6Net local (root only), or skips t saying why.
func routeIPv6(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ip", "-6", "route", "add", "local", testIPv6Net, "dev", "lo").CombinedOutput()
	switch {
	case err == nil:
		t.Cleanup(func() { exec.Command("ip", "-6", "route", "del", "local", testIPv6Net, "dev", "lo").Run() })
	case strings.Contains(string(out), "File exists"):
		// Another run has it; leave it to that run to remove.
	default:
		t.Skipf("cannot route %s to lo (needs root and IPv6): %v %s", testIPv6Net, err, out)
	}
}

// dialFree connects to addr from src, binding src even when it is only routed to lo (IP_FREEBIND).
func dialFree(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
	return d.Dial("tcp", addr)
}

// ipv6Harness is a one-broker harness listening on [::1].
func ipv6Harness(t *testing.T, g limits.GateOptions) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	h, _ := newAbuseHarness(t, g, harnessOpts{mutate: func(o *Options) {
		for i := range o.Routes {
			o.Routes[i].Listen = "[::1]:0"
		}
	}})
	return h
}

// offendV6 sends the seed's 50 MiB declaration from src and waits for the close.
func offendV6(t *testing.T, h *harness, src string) {
	t.Helper()
	c, err := dialFree(src, h.addrs[0])
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	defer c.Close()
	if _, err := c.Write(seedDeclaration); err != nil {
		t.Fatalf("write from %s: %v", src, err)
	}
	expectClosed(t, c, 5*time.Second)
}

// refusedV6 reports whether a connection from src is refused at accept.
func refusedV6(t *testing.T, h *harness, src string) bool {
	t.Helper()
	c, err := dialFree(src, h.addrs[0])
	if errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	defer c.Close()
	if err := apiVersionsOn(c, 1); err == nil {
		return false
	}
	return true
}

// Every address of an IPv6 /64 is one source, over real connections: offences from three addresses of
// one /64 add up to its ban, which refuses a fourth address and not a neighbouring /64; /bans shows the
// prefix, and DELETE /bans/ takes the prefix or any address in it.
func TestIPv6SourcesJudgedByPrefix(t *testing.T) {
	routeIPv6(t)
	h := ipv6Harness(t, limits.GateOptions{OffencesBeforeBan: 3, BanMin: time.Minute, MaxConnsPerIP: 100})
	for _, src := range []string{"2001:db8:6b67:1::1", "2001:db8:6b67:1::2", "2001:db8:6b67:1:ffff::3"} {
		offendV6(t, h, src)
	}
	waitFor(t, 5*time.Second, "the /64 banned", func() bool { return h.counter("kafkaguard_bans_total", nil) == 1 })
	if got := bansInForce(t, h); len(got) != 1 || got[0] != "2001:db8:6b67:1::/64" {
		t.Fatalf("bans in force: %v, want [2001:db8:6b67:1::/64]", got)
	}
	if !refusedV6(t, h, "2001:db8:6b67:1::99") {
		t.Error("a fresh address of the banned /64 was served")
	}
	if refusedV6(t, h, "2001:db8:6b67:2::1") {
		t.Error("an address of another /64 was refused")
	}
	if !unban(h, "2001:db8:6b67:1::") {
		t.Errorf("unban of the /64's first address lifted nothing")
	}
	if refusedV6(t, h, "2001:db8:6b67:1::99") {
		t.Error("still refused after DELETE of the prefix")
	}
	// Banned again; this time lifted by naming one address in it.
	for _, src := range []string{"2001:db8:6b67:1::4", "2001:db8:6b67:1::5", "2001:db8:6b67:1::6"} {
		offendV6(t, h, src)
	}
	waitFor(t, 5*time.Second, "the /64 banned again", func() bool { return len(h.srv.Gate().Bans()) == 1 })
	if !unban(h, "2001:db8:6b67:1::abcd") {
		t.Errorf("unban by an address in the /64 lifted nothing")
	}
}

// ::1 works without root: a ban from it is the ban of ::/64, listed and lifted as such.
func TestIPv6LoopbackBan(t *testing.T) {
	h := ipv6Harness(t, limits.GateOptions{OffencesBeforeBan: 2, BanMin: time.Minute})
	offendV6(t, h, "::1")
	offendV6(t, h, "::1")
	waitFor(t, 5*time.Second, "::1 banned", func() bool { return h.counter("kafkaguard_bans_total", nil) == 1 })
	if got := bansInForce(t, h); len(got) != 1 || got[0] != "::/64" {
		t.Fatalf("bans in force: %v, want [::/64]", got)
	}
	if !refusedV6(t, h, "::1") {
		t.Error("::1 served while banned")
	}
	if !unban(h, "::1") {
		t.Error("unban ::1 lifted nothing")
	}
	if unban(h, "::1") {
		t.Error("unban ::1 twice lifted a ban again")
	}
	if refusedV6(t, h, "::1") {
		t.Error("::1 refused after DELETE")
	}
}
