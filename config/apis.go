package config

import (
	"strings"

	"github.com/kafkaguard/kafkaguard/framing"
)

// apiNames lists every API name kmsg knows, in order, for suggestions; the
// table from name to key is framing's.
var apiNames = framing.APINames()

// APIKey returns the Kafka API key for a name as kmsg spells it (case-sensitive,
// e.g. "Produce", "Metadata", "ApiVersions"), and whether the name is known.
// It turns the names in Limits.API and Limits.DenyAPI into wire keys.
func APIKey(name string) (int16, bool) {
	return framing.KeyForName(name)
}

// unknownAPI explains an unknown API name, suggesting the nearest known one.
func unknownAPI(name string) error {
	msg := ErrUnknownAPI.Error()
	if s := suggest(name, apiNames); s != "" {
		msg += " (did you mean " + s + "?)"
	} else {
		msg += " (names are kmsg's, e.g. Produce, Metadata, ApiVersions)"
	}
	return &detailError{sentinel: ErrUnknownAPI, msg: msg}
}

// canonicalAPIName returns the kmsg spelling of name matched without regard to
// case, or name unchanged. Environment keys arrive lower-cased, so
// KAFKAGUARD_LIMITS__API__METADATA must still reach "Metadata".
func canonicalAPIName(name string) string {
	if _, ok := framing.KeyForName(name); ok {
		return name
	}
	for _, n := range apiNames {
		if strings.EqualFold(n, name) {
			return n
		}
	}
	return name
}

// suggest returns the candidate closest to s: an exact match ignoring case and
// underscores first, else the one within a small edit distance, else "".
func suggest(s string, candidates []string) string {
	fold := func(x string) string { return strings.ToLower(strings.ReplaceAll(x, "_", "")) }
	for _, c := range candidates {
		if fold(c) == fold(s) {
			return c
		}
	}
	best, bestDist := "", len(s)/3+1
	if bestDist > 3 {
		bestDist = 3
	}
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d <= bestDist && (best == "" || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b. Inputs are config
// keys and API names, so the quadratic cost is bounded by their short length;
// longer inputs are cut to keep a hostile file from costing much.
func editDistance(a, b string) int {
	const maxLen = 64
	if len(a) > maxLen {
		a = a[:maxLen]
	}
	if len(b) > maxLen {
		b = b[:maxLen]
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
