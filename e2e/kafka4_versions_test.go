package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafkaguard/kafkaguard/framing"
)

// apiVersions sends ApiVersions v3 to addr and returns key -> [min, max].
func apiVersions(t *testing.T, addr string) map[int16][2]int16 {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("ApiVersions to %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "kafkaguard-e2e", "1"
	if _, err := c.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("e2e")).AppendRequest(nil, req, 9)); err != nil {
		t.Fatalf("ApiVersions to %s: %v", addr, err)
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		t.Fatalf("ApiVersions from %s: %v", addr, err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 1<<20 {
		t.Fatalf("ApiVersions from %s: %d bytes", addr, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("ApiVersions from %s: %v", addr, err)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 3
	if err := resp.ReadFrom(body[4:]); err != nil { // response header v0: correlation id only
		t.Fatalf("ApiVersions from %s: %v", addr, err)
	}
	out := map[int16][2]int16{}
	for _, k := range resp.ApiKeys {
		out[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	return out
}

// TestKafka4ApiVersions compares what a Kafka 4 broker advertises with what
// kafkaguard passes on: every version kafkaguard offers is one it parses
// (framing.MaxVersion, kmsg's newest less the KIP-951 caps), and the APIs it
// narrows or drops are printed. That every client of TestKafka4Clients
// negotiated versions kafkaguard understands is shown there: none of their
// requests was refused (a version kafkaguard does not know is closed as
// bad_version).
func TestKafka4ApiVersions(t *testing.T) {
	requireKafka4(t)
	k := sharedKafka4(t)
	g := startGuard(t, k.Addrs())
	direct := apiVersions(t, k.Addrs()[0])
	through := apiVersions(t, g.addrs[0])

	var keys []int
	for key := range direct {
		keys = append(keys, int(key))
	}
	sort.Ints(keys)
	var clamped, dropped, newer []string
	for _, ki := range keys {
		key := int16(ki)
		d := direct[key]
		name := framing.APIName(key)
		served, known := framing.MaxVersion(key)
		th, ok := through[key]
		switch {
		case !ok:
			dropped = append(dropped, fmt.Sprintf("%s(%d) v%d-%d", name, key, d[0], d[1]))
		case th != d:
			clamped = append(clamped, fmt.Sprintf("%s v%d-%d -> v%d-%d", name, d[0], d[1], th[0], th[1]))
		}
		if known && d[1] > served && key != 18 {
			newer = append(newer, fmt.Sprintf("%s broker v%d > kafkaguard v%d", name, d[1], served))
		}
		if ok && key != 18 && (!known || th[1] > served) {
			t.Errorf("kafkaguard offers %s(%d) up to v%d; it serves up to v%d (known %v)", name, key, th[1], served, known)
		}
	}
	t.Logf("FIGURES kafka4 ApiVersions: broker advertises %d APIs, kafkaguard passes %d; Produce broker v%d-%d -> v%d-%d; Fetch broker v%d-%d -> v%d-%d",
		len(direct), len(through), direct[0][0], direct[0][1], through[0][0], through[0][1], direct[1][0], direct[1][1], through[1][0], through[1][1])
	t.Logf("FIGURES kafka4 ApiVersions narrowed: %s", strings.Join(clamped, "; "))
	t.Logf("FIGURES kafka4 ApiVersions dropped: %s", strings.Join(dropped, "; "))
	t.Logf("FIGURES kafka4 ApiVersions where the broker is newer than kafkaguard: %s", strings.Join(newer, "; "))
	if through[0][1] > 9 || through[1][1] > 15 {
		t.Errorf("kafkaguard offers Produce v%d / Fetch v%d; want at most v9 / v15 (KIP-951 NodeEndpoints are not rewritten)", through[0][1], through[1][1])
	}
	for _, key := range []int16{78, 79} { // ShareFetch, ShareAcknowledge
		if v, ok := through[key]; ok {
			t.Errorf("kafkaguard offers %s v%d-%d, whose responses carry broker addresses it does not rewrite", framing.APIName(key), v[0], v[1])
		}
	}
}
