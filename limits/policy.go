package limits

import (
	"errors"
	"fmt"
	"math"

	"github.com/kafkaguard/kafkaguard/framing"
)

// Reason names why a frame or connection was refused; it is a bounded metric label.
type Reason string

// Reasons a request is refused by Policy.Check.
const (
	ReasonTooLarge        Reason = "too_large"
	ReasonClientIDTooLong Reason = "client_id_too_long"
	ReasonDeniedAPI       Reason = "denied_api"
	ReasonUnknownAPI      Reason = "unknown_api"
	ReasonBadVersion      Reason = "bad_version"
)

// Action is what the proxy does with a request after Policy.Check.
type Action uint8

const (
	// Allow forwards the request.
	Allow Action = iota
	// Reject answers the request in the protocol without forwarding it (a Produce with acks != 0 gets
	// MESSAGE_TOO_LARGE, which a producer does not retry), or closes the connection when the proxy cannot
	// (the frame is too large to drain, or acks == 0 leaves nothing to answer).
	Reject
	// Close closes the connection without an answer, as the broker itself would.
	Close
)

// String returns the action's name for logs.
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Reject:
		return "reject"
	case Close:
		return "close"
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// maxClientIDBytes is the longest client id the request header can carry (an int16 length).
const maxClientIDBytes = math.MaxInt16

// PolicyOptions configures NewPolicy.
type PolicyOptions struct {
	// MaxRequestBytes is the size limit of every request without a per-API limit; it must be positive.
	MaxRequestBytes int32
	// PerAPI maps an api key to its own limit, overriding MaxRequestBytes (larger or smaller). Keys must be
	// 0..32767 and limits positive. Nil means no overrides.
	PerAPI map[int16]int32
	// MaxClientIDBytes is the longest client id allowed, 0..32767; 0 means no limit beyond the protocol's.
	MaxClientIDBytes int
	// MaxDrainBytes is the largest oversized Produce frame the proxy reads through (to answer it in the
	// protocol) instead of closing; 0 means never drain. It must not be negative.
	MaxDrainBytes int64
	// Deny lists api keys (0..32767) refused outright by closing the connection.
	Deny []int16
	// ForwardUnknown forwards api keys kafkaguard does not know (true) or closes on them (false, the
	// zero value: a key the proxy cannot parse is more likely an attack than a newer client).
	ForwardUnknown bool
}

// rule is what the policy knows of one api key.
type rule struct {
	limit int32
	deny  bool
}

// Policy judges requests by their header and declared size. It is immutable after NewPolicy and safe for
// concurrent use; a lookup indexes a slice by api key, so no map is consulted per frame.
type Policy struct {
	rules          []rule // index = api key, up to the largest key configured; later keys use global
	global         int32
	maxLimit       int32
	maxClientID    int
	maxDrain       int64
	forwardUnknown bool
}

// NewPolicy checks o and builds a policy from it. Problems are joined and each wraps ErrInvalidOptions.
func NewPolicy(o PolicyOptions) (*Policy, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("new policy: "+format+": %w", append(args, ErrInvalidOptions)...))
	}
	if o.MaxRequestBytes <= 0 {
		bad("max request bytes %d must be positive", o.MaxRequestBytes)
	}
	if o.MaxClientIDBytes < 0 || o.MaxClientIDBytes > maxClientIDBytes {
		bad("max client id bytes %d must be 0..%d", o.MaxClientIDBytes, maxClientIDBytes)
	}
	if o.MaxDrainBytes < 0 {
		bad("max drain bytes %d must not be negative", o.MaxDrainBytes)
	}
	top := int16(-1)
	for k, v := range o.PerAPI {
		if k < 0 {
			bad("per-API limit for key %d: key must be 0..32767", k)
			continue
		}
		if v <= 0 {
			bad("per-API limit %d for key %d must be positive", v, k)
		}
		top = max(top, k)
	}
	for _, k := range o.Deny {
		if k < 0 {
			bad("denied key %d must be 0..32767", k)
			continue
		}
		top = max(top, k)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p := &Policy{
		rules:          make([]rule, int(top)+1),
		global:         o.MaxRequestBytes,
		maxLimit:       o.MaxRequestBytes,
		maxClientID:    o.MaxClientIDBytes,
		maxDrain:       o.MaxDrainBytes,
		forwardUnknown: o.ForwardUnknown,
	}
	if p.maxClientID == 0 {
		p.maxClientID = maxClientIDBytes
	}
	for i := range p.rules {
		p.rules[i].limit = o.MaxRequestBytes
	}
	for k, v := range o.PerAPI {
		p.rules[k].limit = v
		p.maxLimit = max(p.maxLimit, v)
	}
	for _, k := range o.Deny {
		p.rules[k].deny = true
	}
	return p, nil
}

func (p *Policy) rule(key int16) rule {
	if key >= 0 && int(key) < len(p.rules) {
		return p.rules[key]
	}
	return rule{limit: p.global}
}

// Limit returns the size limit for key (per-API or global); for keys outside 0..32767 the global one.
func (p *Policy) Limit(key int16) int32 { return p.rule(key).limit }

// MaxLimit returns the largest limit of any key, to judge a size before the header is read: a frame over it
// is too large whatever its key.
func (p *Policy) MaxLimit() int32 { return p.maxLimit }

// MaxClientIDBytes returns the longest client id allowed; when none was configured it is 32767, the most
// the header can carry, so callers compare against it without a special case.
func (p *Policy) MaxClientIDBytes() int { return p.maxClientID }

// MaxDrainBytes returns the largest oversized frame the proxy may read through; 0 means none.
func (p *Policy) MaxDrainBytes() int64 { return p.maxDrain }

// Check judges a request from its parsed header and declared frame size.
// Whether kafkaguard knows the key and serves the version comes from
// framing.ServesVersion. In order:
//
//   - a denied key: Close, ReasonDeniedAPI;
//   - an unknown key: Close, ReasonUnknownAPI, unless ForwardUnknown (then its version is not judged
//     against a known max, since there is none);
//   - a negative version: Close, ReasonBadVersion;
//   - a version kafkaguard does not serve: Close, ReasonBadVersion (ApiVersions, which clients probe with
//     newer versions than the broker knows, is served at every version; see framing.ServesVersion);
//   - a size over Limit(key): Reject, ReasonTooLarge for Produce, Close, ReasonTooLarge otherwise.
//     A negative size is a length prefix over 2 GiB read as signed: Close, ReasonTooLarge for every key,
//     because no such frame can be read through.
//
// Anything else is Allow with an empty reason.
func (p *Policy) Check(h framing.RequestHeader, size int32) (Action, Reason) {
	r := p.rule(h.APIKey)
	known, served := framing.ServesVersion(h.APIKey, h.APIVersion)
	switch {
	case r.deny:
		return Close, ReasonDeniedAPI
	case !known && !p.forwardUnknown:
		return Close, ReasonUnknownAPI
	case h.APIVersion < 0:
		return Close, ReasonBadVersion
	case known && !served:
		return Close, ReasonBadVersion
	case size < 0:
		return Close, ReasonTooLarge
	case size > r.limit:
		if h.APIKey == framing.KeyProduce {
			return Reject, ReasonTooLarge
		}
		return Close, ReasonTooLarge
	}
	return Allow, ""
}

// Drainable reports whether an oversized frame of this declared size may be read through and discarded
// (0 <= size <= MaxDrainBytes) so that it can be answered in the protocol; otherwise the proxy closes.
func (p *Policy) Drainable(size int32) bool {
	return size >= 0 && int64(size) <= p.maxDrain
}

// Denied reports whether key is refused outright.
func (p *Policy) Denied(key int16) bool { return p.rule(key).deny }

// ForwardsUnknown reports whether API keys kafkaguard does not know are forwarded.
func (p *Policy) ForwardsUnknown() bool { return p.forwardUnknown }
