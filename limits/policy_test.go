package limits

import (
	"errors"
	"testing"

	"github.com/kafkaguard/kafkaguard/framing"
)

const (
	keyProduce     = framing.KeyProduce
	keyFetch       = framing.KeyFetch
	keyMetadata    = framing.KeyMetadata
	keyAPIVersions = framing.KeyAPIVersions
)

func testPolicy(t testing.TB, forwardUnknown bool) *Policy {
	t.Helper()
	p, err := NewPolicy(PolicyOptions{
		MaxRequestBytes:  1000,
		PerAPI:           map[int16]int32{keyProduce: 5000, keyMetadata: 100},
		MaxClientIDBytes: 64,
		MaxDrainBytes:    8000,
		Deny:             []int16{keyFetch, 57},
		ForwardUnknown:   forwardUnknown,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewPolicyErrors(t *testing.T) {
	tests := []struct {
		name  string
		o     PolicyOptions
		nerrs int
	}{
		{"minimal", PolicyOptions{MaxRequestBytes: 1}, 0},
		{"zero max", PolicyOptions{}, 1},
		{"negative max", PolicyOptions{MaxRequestBytes: -1}, 1},
		{"client id too long", PolicyOptions{MaxRequestBytes: 1, MaxClientIDBytes: 32768}, 1},
		{"client id negative", PolicyOptions{MaxRequestBytes: 1, MaxClientIDBytes: -1}, 1},
		{"drain negative", PolicyOptions{MaxRequestBytes: 1, MaxDrainBytes: -1}, 1},
		{"per-API negative key", PolicyOptions{MaxRequestBytes: 1, PerAPI: map[int16]int32{-1: 10}}, 1},
		{"per-API zero limit", PolicyOptions{MaxRequestBytes: 1, PerAPI: map[int16]int32{3: 0}}, 1},
		{"deny negative key", PolicyOptions{MaxRequestBytes: 1, Deny: []int16{-5}}, 1},
		{"every problem", PolicyOptions{MaxClientIDBytes: -1, MaxDrainBytes: -1, Deny: []int16{-1}}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPolicy(tt.o)
			if tt.nerrs == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("err = %v, want ErrInvalidOptions", err)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("err %T is not a joined error", err)
			}
			if n := len(joined.Unwrap()); n != tt.nerrs {
				t.Errorf("%d problems reported, want %d: %v", n, tt.nerrs, err)
			}
		})
	}
}

func TestPolicyLimits(t *testing.T) {
	p := testPolicy(t, false)
	tests := []struct {
		key  int16
		want int32
	}{
		{keyProduce, 5000},
		{keyMetadata, 100},
		{keyFetch, 1000},
		{2, 1000},
		{200, 1000},   // beyond every configured key
		{32767, 1000}, // the largest key
		{-1, 1000},    // outside 0..32767
		{-32768, 1000},
	}
	for _, tt := range tests {
		if got := p.Limit(tt.key); got != tt.want {
			t.Errorf("Limit(%d) = %d, want %d", tt.key, got, tt.want)
		}
	}
	if got := p.MaxLimit(); got != 5000 {
		t.Errorf("MaxLimit = %d, want 5000", got)
	}
	if got := p.MaxClientIDBytes(); got != 64 {
		t.Errorf("MaxClientIDBytes = %d, want 64", got)
	}
	if got := p.MaxDrainBytes(); got != 8000 {
		t.Errorf("MaxDrainBytes = %d, want 8000", got)
	}
	small, err := NewPolicy(PolicyOptions{MaxRequestBytes: 1000, PerAPI: map[int16]int32{keyProduce: 10}})
	if err != nil {
		t.Fatal(err)
	}
	if got := small.MaxLimit(); got != 1000 {
		t.Errorf("MaxLimit with only smaller per-API limits = %d, want the global 1000", got)
	}
	if got := small.MaxClientIDBytes(); got != 32767 {
		t.Errorf("MaxClientIDBytes unset = %d, want 32767", got)
	}
}

func TestPolicyCheck(t *testing.T) {
	tests := []struct {
		name           string
		forwardUnknown bool
		key, version   int16
		knownKey       bool
		knownVersion   bool
		size           int32
		want           Action
		reason         Reason
	}{
		{"allow", false, keyMetadata, 12, true, true, 100, Allow, ""},
		{"allow global limit", false, 2, 5, true, true, 1000, Allow, ""},
		{"allow produce under per-API", false, keyProduce, 9, true, true, 5000, Allow, ""},
		{"denied", false, keyFetch, 4, true, true, 10, Close, ReasonDeniedAPI},
		{"denied beats unknown", false, 57, 0, false, false, 10, Close, ReasonDeniedAPI},
		{"denied beats forward unknown", true, 57, 0, false, false, 10, Close, ReasonDeniedAPI},
		{"unknown key closes", false, 999, 0, false, false, 10, Close, ReasonUnknownAPI},
		{"negative key is unknown", false, -3, 0, false, false, 10, Close, ReasonUnknownAPI},
		{"unknown key forwarded", true, 999, 7, false, false, 10, Allow, ""},
		{"unknown key forwarded still sized", true, 999, 7, false, false, 1001, Close, ReasonTooLarge},
		{"unknown key forwarded negative version", true, 999, -1, false, false, 10, Close, ReasonBadVersion},
		{"negative version", false, keyMetadata, -1, true, true, 10, Close, ReasonBadVersion},
		{"negative version api versions", false, keyAPIVersions, -1, true, true, 10, Close, ReasonBadVersion},
		{"version above max", false, keyMetadata, 99, true, false, 10, Close, ReasonBadVersion},
		{"version above max produce", false, keyProduce, 99, true, false, 10, Close, ReasonBadVersion},
		{"api versions probe", false, keyAPIVersions, 99, true, false, 10, Allow, ""},
		{"api versions too large", false, keyAPIVersions, 99, true, false, 1001, Close, ReasonTooLarge},
		{"produce too large", false, keyProduce, 9, true, true, 5001, Reject, ReasonTooLarge},
		{"metadata too large under global", false, keyMetadata, 12, true, true, 101, Close, ReasonTooLarge},
		{"other too large", false, 2, 5, true, true, 1001, Close, ReasonTooLarge},
		{"negative size", false, keyMetadata, 12, true, true, -1, Close, ReasonTooLarge},
		{"negative size produce", false, keyProduce, 9, true, true, -50, Close, ReasonTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy(t, tt.forwardUnknown)
			a, r := p.Check(framing.RequestHeader{APIKey: tt.key, APIVersion: tt.version}, tt.size)
			if a != tt.want || r != tt.reason {
				t.Errorf("Check = %v, %q; want %v, %q", a, r, tt.want, tt.reason)
			}
		})
	}
}

func TestPolicyDrainable(t *testing.T) {
	p := testPolicy(t, false)
	none, err := NewPolicy(PolicyOptions{MaxRequestBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		p    *Policy
		size int32
		want bool
	}{
		{p, 0, true},
		{p, 7999, true},
		{p, 8000, true},
		{p, 8001, false},
		{p, -1, false},
		{none, 0, true},
		{none, 1, false},
	}
	for _, tt := range tests {
		if got := tt.p.Drainable(tt.size); got != tt.want {
			t.Errorf("Drainable(%d) with max %d = %v, want %v", tt.size, tt.p.MaxDrainBytes(), got, tt.want)
		}
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{Allow: "allow", Reject: "reject", Close: "close", 7: "action(7)"} {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q, want %q", a, got, want)
		}
	}
}

// FuzzPolicyCheck holds Check to its contract for any header and size: Allow only within the key's limit,
// Reject only for an oversized Produce, and a reason exactly when the action is not Allow.
func FuzzPolicyCheck(f *testing.F) {
	f.Add(int16(0), int16(9), int32(5001), false)
	f.Add(int16(18), int16(99), int32(10), false)
	f.Add(int16(999), int16(0), int32(1), true)
	f.Add(int16(-1), int16(-1), int32(-1), true)
	f.Fuzz(func(t *testing.T, key, version int16, size int32, forward bool) {
		knownKey, _ := framing.ServesVersion(key, version)
		p := testPolicy(t, forward)
		a, r := p.Check(framing.RequestHeader{APIKey: key, APIVersion: version}, size)
		switch a {
		case Allow:
			if r != "" || size < 0 || size > p.Limit(key) || size > p.MaxLimit() || version < 0 {
				t.Fatalf("Allow with reason %q, size %d, limit %d, version %d", r, size, p.Limit(key), version)
			}
			if !knownKey && !forward {
				t.Fatal("Allow of an unknown key without ForwardUnknown")
			}
			if key == keyFetch || key == 57 {
				t.Fatal("Allow of a denied key")
			}
		case Reject:
			if key != keyProduce || r != ReasonTooLarge {
				t.Fatalf("Reject of key %d reason %q", key, r)
			}
		case Close:
			if r == "" {
				t.Fatal("Close without a reason")
			}
		default:
			t.Fatalf("unknown action %v", a)
		}
	})
}

func BenchmarkPolicyCheck(b *testing.B) {
	p := testPolicy(b, false)
	b.ReportAllocs()
	for b.Loop() {
		if a, _ := p.Check(framing.RequestHeader{APIKey: keyProduce, APIVersion: 9}, 4096); a != Allow {
			b.Fatal(a)
		}
	}
}
