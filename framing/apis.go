package framing

import "github.com/twmb/franz-go/pkg/kmsg"

// MaxKnownKey is the largest api key kmsg names.
const MaxKnownKey int16 = kmsg.MaxKey

// apiInfo is what the package knows of one api key, taken from kmsg once at
// init so that the per-frame lookups neither allocate nor switch over a
// hundred cases.
type apiInfo struct {
	name        string
	maxVersion  int16
	minFlexible int16 // lowest flexible version; -1 if none
	known       bool
}

var apis = buildAPIs()

func buildAPIs() (t [MaxKnownKey + 1]apiInfo) {
	for k := range t {
		req := kmsg.RequestForKey(int16(k))
		if req == nil {
			t[k] = apiInfo{name: "unknown", minFlexible: -1}
			continue
		}
		info := apiInfo{
			name:        kmsg.NameForKey(int16(k)),
			maxVersion:  req.MaxVersion(),
			minFlexible: -1,
			known:       true,
		}
		// kmsg's flexible versions are a suffix of the version range; the
		// tests compare every version against kmsg to hold that.
		for v := info.maxVersion; v >= 0; v-- {
			req.SetVersion(v)
			if !req.IsFlexible() {
				break
			}
			info.minFlexible = v
		}
		t[k] = info
	}
	return t
}

func lookup(key int16) *apiInfo {
	if key < 0 || key > MaxKnownKey || !apis[key].known {
		return nil
	}
	return &apis[key]
}

// HeaderVersion returns the request header version for an api key and
// version: 2 when the request version is flexible, 1 otherwise, and 0 for
// ControlledShutdown v0, the one request sent without a client id. known
// reports whether kmsg knows the key and version. A version above kmsg's
// maximum for a known key is assumed flexible iff the maximum is, since
// Kafka never takes flexibility away; unknown keys and negative versions
// get header v1.
func HeaderVersion(key, version int16) (hv int8, known bool) {
	a := lookup(key)
	if a == nil || version < 0 {
		return 1, false
	}
	if key == 7 && version == 0 {
		return 0, true
	}
	known = version <= a.maxVersion
	if a.minFlexible >= 0 && (version >= a.minFlexible || !known) {
		return 2, known
	}
	return 1, known
}

// MaxVersion returns kmsg's highest version for an api key and whether the
// key is known at all.
func MaxVersion(key int16) (int16, bool) {
	a := lookup(key)
	if a == nil {
		return 0, false
	}
	return a.maxVersion, true
}

// APIName returns kmsg's name for an api key ("Produce", "Metadata", ...) or
// "unknown". The set of names is bounded, so it is safe as a metric label.
func APIName(key int16) string {
	a := lookup(key)
	if a == nil {
		return "unknown"
	}
	return a.name
}
