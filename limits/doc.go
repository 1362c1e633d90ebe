// Package limits owns kafkaguard's budgets and verdicts: the chunk Pool that bounds the memory frames move
// through (fixed-size chunks from one budget, waiting when it is spent, never an allocation the size of a
// declared frame), the size Policy that judges a request from its header (per-API limits, denied and
// unknown keys, versions), and the Gate that admits or refuses connections by source, an address prefix
// such as an IPv6 /64 (bans for repeat offenders that double up to a cap, concurrent connections and
// connection rate per source, a bounded table of sources). Besides the standard library it imports only framing,
// for the parsed request header and the protocol facts the policy asks about: metrics and logs leave through func hooks (PoolOptions.OnWait, GateOptions.OnBan and OnUnban) and gauges the caller
// reads. It starts no goroutines; the owner of a Gate calls Sweep every few seconds. A Policy is immutable
// (a reload builds a new one); a Gate's settings change live with SetOptions, which keeps its bans.
//
// Usage:
//
//	pool, err := limits.NewPool(limits.PoolOptions{ChunkBytes: 16 << 10, TotalBytes: 64 << 20})
//	policy, err := limits.NewPolicy(limits.PolicyOptions{MaxRequestBytes: 1 << 20, MaxDrainBytes: 4 << 20})
//	gate, err := limits.NewGate(limits.GateOptions{OffencesBeforeBan: 5, OffenceWindow: time.Minute,
//		BanMin: 30 * time.Second, BanMax: time.Hour, ForgetAfter: time.Hour, MaxConnsPerIP: 100,
//		MaxTracked: 50_000, IPv4Prefix: 32, IPv6Prefix: 64, OnBan: logBan}) // every field given: no defaults here
//
//	ok, reason := gate.Admit(addr) // on accept, before reading a byte
//	if !ok {
//		conn.Close() // count reason
//	}
//	defer gate.Release(addr)
//	switch action, reason := policy.Check(header, size); action {
//	case limits.Reject: // answer MESSAGE_TOO_LARGE if policy.Drainable(size), else close
//	case limits.Close:
//		gate.Offence(addr, clientID, string(reason), 1)
//	}
//	chunk, err := pool.Get(time.Second, shutdown) // then stream the frame through it
//	defer pool.Put(chunk)
package limits
