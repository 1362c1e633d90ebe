package framing

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kmsgHeaderVersion is the request header version kmsg's own formatter
// writes for key and version.
func kmsgHeaderVersion(req kmsg.Request) int8 {
	switch {
	case req.Key() == 7 && req.GetVersion() == 0:
		return 0
	case req.IsFlexible():
		return 2
	}
	return 1
}

func TestHeaderVersionMatchesKmsg(t *testing.T) {
	if MaxKnownKey != kmsg.MaxKey {
		t.Fatalf("MaxKnownKey = %d, kmsg.MaxKey = %d", MaxKnownKey, kmsg.MaxKey)
	}
	for key := int16(0); key <= MaxKnownKey; key++ {
		req := kmsg.RequestForKey(key)
		if req == nil {
			if hv, known := HeaderVersion(key, 0); hv != 1 || known {
				t.Errorf("HeaderVersion(%d, 0) = %d, %v for a key kmsg lacks", key, hv, known)
			}
			continue
		}
		t.Run(kmsg.NameForKey(key), func(t *testing.T) {
			maxV := req.MaxVersion()
			served := maxV
			if c, ok := versionCaps[key]; ok && c < maxV {
				served = c
			}
			if got, ok := MaxVersion(key); got != served || !ok {
				t.Errorf("MaxVersion(%d) = %d, %v, want %d, true", key, got, ok, served)
			}
			if got := APIName(key); got != kmsg.NameForKey(key) {
				t.Errorf("APIName(%d) = %q, want %q", key, got, kmsg.NameForKey(key))
			}
			for v := int16(0); v <= maxV; v++ {
				req.SetVersion(v)
				hv, known := HeaderVersion(key, v)
				if want := kmsgHeaderVersion(req); hv != want || !known {
					t.Errorf("HeaderVersion(%d, %d) = %d, %v, want %d, true", key, v, hv, known, want)
				}
			}
			req.SetVersion(maxV)
			want := kmsgHeaderVersion(req)
			for _, v := range []int16{maxV + 1, 32767} {
				if hv, known := HeaderVersion(key, v); hv != want || known {
					t.Errorf("HeaderVersion(%d, %d) above max = %d, %v, want %d, false", key, v, hv, known, want)
				}
			}
			if hv, known := HeaderVersion(key, -1); hv != 1 || known {
				t.Errorf("HeaderVersion(%d, -1) = %d, %v, want 1, false", key, hv, known)
			}
		})
	}
}

func TestHeaderVersionSpecialCases(t *testing.T) {
	tests := []struct {
		key, version int16
		hv           int8
		known        bool
	}{
		{7, 0, 0, true},   // ControlledShutdown v0: no client id
		{7, 1, 1, true},   // ControlledShutdown v1
		{7, 3, 2, true},   // ControlledShutdown v3 is flexible
		{0, 8, 1, true},   // Produce v8
		{0, 9, 2, true},   // Produce v9 is flexible
		{0, 13, 2, true},  // Produce v13
		{0, 14, 2, false}, // beyond kmsg: flexible like v13
		{18, 3, 2, true},  // ApiVersions v3 request header is v2
		{-1, 0, 1, false},
		{MaxKnownKey + 1, 5, 1, false},
		{32767, 0, 1, false},
		{-32768, 0, 1, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d v%d", tt.key, tt.version), func(t *testing.T) {
			hv, known := HeaderVersion(tt.key, tt.version)
			if hv != tt.hv || known != tt.known {
				t.Fatalf("HeaderVersion(%d, %d) = %d, %v, want %d, %v", tt.key, tt.version, hv, known, tt.hv, tt.known)
			}
		})
	}
}

func TestUnknownKeys(t *testing.T) {
	for _, key := range []int16{-1, MaxKnownKey + 1, 32767, -32768} {
		if got := APIName(key); got != "unknown" {
			t.Errorf("APIName(%d) = %q, want unknown", key, got)
		}
		if v, ok := MaxVersion(key); v != 0 || ok {
			t.Errorf("MaxVersion(%d) = %d, %v, want 0, false", key, v, ok)
		}
	}
	if got := APIName(0); got != "Produce" {
		t.Errorf("APIName(0) = %q, want Produce", got)
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	var sink int
	allocs := testing.AllocsPerRun(100, func() {
		for k := int16(-1); k <= MaxKnownKey+1; k++ {
			hv, _ := HeaderVersion(k, 3)
			mv, _ := MaxVersion(k)
			sink += int(hv) + int(mv) + len(APIName(k))
		}
	})
	if allocs != 0 {
		t.Fatalf("lookups allocate %v times per run", allocs)
	}
	_ = sink
}
