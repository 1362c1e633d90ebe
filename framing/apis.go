package framing

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// MaxKnownKey is the largest api key kmsg names.
const MaxKnownKey int16 = kmsg.MaxKey

// API keys kafkaguard treats specially, spelt once, from kmsg, so that no
// other package writes an api key as a number.
const (
	KeyProduce            = int16(kmsg.Produce)
	KeyFetch              = int16(kmsg.Fetch)
	KeyMetadata           = int16(kmsg.Metadata)
	KeyControlledShutdown = int16(kmsg.ControlledShutdown)
	KeyFindCoordinator    = int16(kmsg.FindCoordinator)
	KeyAPIVersions        = int16(kmsg.ApiVersions)
	KeyDescribeCluster    = int16(kmsg.DescribeCluster)
)

// apiInfo is what the package knows of one api key, taken from kmsg once at
// init so that the per-frame lookups neither allocate nor switch over a
// hundred cases.
type apiInfo struct {
	name        string
	maxVersion  int16
	maxServed   int16 // maxVersion lowered by versionCaps (MaxVersion)
	minFlexible int16 // lowest flexible version; -1 if none
	known       bool
}

var apis = buildAPIs()

// versionCaps are the APIs kafkaguard serves below kmsg's newest version, with
// the highest version it serves (-1: none). Every cap is a response that would
// carry broker addresses kafkaguard does not rewrite: KIP-951 added
// NodeEndpoints (host and port of new leaders, a tagged field after the
// records) to Produce v10+ and Fetch v16+ responses, and share groups
// (KIP-932) carry them in every ShareFetch and ShareAcknowledge response.
// Rewriting them would mean decoding whole Fetch responses, records and all,
// on the hot path; capping costs a client one Metadata refresh (which is
// rewritten) when a leader moves. ApiVersions answers are clamped to these
// caps, so clients never pick a capped version, and a request above one is
// refused like any unknown version.
var versionCaps = map[int16]int16{
	KeyProduce:                    9,
	KeyFetch:                      15,
	kmsg.ShareFetch.Int16():       -1,
	kmsg.ShareAcknowledge.Int16(): -1,
}

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
		info.maxServed = info.maxVersion
		if c, ok := versionCaps[int16(k)]; ok && c < info.maxServed {
			info.maxServed = c
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
	if key == KeyControlledShutdown && version == 0 {
		return 0, true
	}
	known = version <= a.maxVersion
	if a.minFlexible >= 0 && (version >= a.minFlexible || !known) {
		return 2, known
	}
	return 1, known
}

// MaxVersion returns the highest version of an api key that kafkaguard
// serves — kmsg's newest, or lower where versionCaps says so (-1 when it
// serves none) — and whether the key is known at all.
func MaxVersion(key int16) (int16, bool) {
	a := lookup(key)
	if a == nil {
		return 0, false
	}
	// The caps are applied once at init: this runs for every frame
	// (Policy.Check), where a map lookup showed in profiles.
	return a.maxServed, true
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

// ServesVersion reports whether kmsg knows key, and whether kafkaguard
// serves it at version: 0..MaxVersion, or any version from 0 for
// ApiVersions, which clients probe at their own newest version and the
// broker answers in one both know. This is the one place that exemption is
// written; the policy, the header reader and the ApiVersions clamp ask here.
func ServesVersion(key, version int16) (known, served bool) {
	maxVer, known := MaxVersion(key)
	return known, known && version >= 0 && (version <= maxVer || key == KeyAPIVersions)
}

// keysByName maps every api name kmsg knows, spelt as kmsg spells it, to
// its key; apiNames lists those names in order.
var keysByName, apiNames = func() (map[string]int16, []string) {
	m := make(map[string]int16, len(apis))
	names := make([]string, 0, len(apis))
	for k, a := range apis {
		if a.known {
			m[a.name] = int16(k)
			names = append(names, a.name)
		}
	}
	sort.Strings(names)
	return m, names
}()

// KeyForName returns the api key kmsg names name (case-sensitive:
// "Produce", "Metadata", "ApiVersions"), and whether there is one.
func KeyForName(name string) (int16, bool) {
	k, ok := keysByName[name]
	return k, ok
}

// APINames returns every api name kmsg knows, sorted; the caller owns the
// slice.
func APINames() []string { return append([]string(nil), apiNames...) }
