package limits_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
	"github.com/kafkaguard/kafkaguard/limits"
)

func ExamplePool() {
	pool, err := limits.NewPool(limits.PoolOptions{ChunkBytes: 16 << 10, TotalBytes: 32 << 10})
	if err != nil {
		panic(err)
	}
	a, _ := pool.Get(time.Second, nil)
	b, _ := pool.Get(time.Second, nil)
	_, err = pool.Get(time.Millisecond, nil) // the budget is spent: backpressure, not growth
	fmt.Println(pool.InUse(), pool.Capacity(), err)
	pool.Put(a)
	pool.Put(b)
	// Output: 32768 32768 chunk pool exhausted
}

func ExamplePolicy_Check() {
	policy, err := limits.NewPolicy(limits.PolicyOptions{
		MaxRequestBytes: 1 << 20,
		PerAPI:          map[int16]int32{framing.KeyMetadata: 64 << 10},
		MaxDrainBytes:   4 << 20,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(policy.Check(framing.RequestHeader{APIKey: framing.KeyProduce, APIVersion: 9}, 2<<20))     // Produce over the limit
	fmt.Println(policy.Drainable(2 << 20))                                                                 // small enough to read through and answer
	fmt.Println(policy.Check(framing.RequestHeader{APIKey: framing.KeyMetadata, APIVersion: 12}, 100<<10)) // Metadata over its own limit
	fmt.Println(policy.Check(framing.RequestHeader{APIKey: framing.KeyAPIVersions, APIVersion: 99}, 64))   // ApiVersions probing a newer version
	// Output:
	// reject too_large
	// true
	// close too_large
	// allow
}

func ExampleGate() {
	// Every setting is given; NewGate fills in nothing (kafkaguard takes them from config.Default).
	gate, err := limits.NewGate(limits.GateOptions{
		OffencesBeforeBan: 3,
		OffenceWindow:     time.Minute,
		BanMin:            time.Minute,
		BanMax:            time.Hour,
		ForgetAfter:       time.Hour,
		MaxConnsPerIP:     2,
		MaxTracked:        50_000,
		IPv4Prefix:        32,
		IPv6Prefix:        64,
		OnBan: func(b limits.Ban) {
			fmt.Println("banned", limits.SourceString(b.Source), b.ClientID, b.Reason, b.Count)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	addr := netip.MustParseAddr("192.0.2.7")
	for range 3 {
		if ok, _ := gate.Admit(addr); ok {
			// A 50 MiB frame declared by a 5-byte write: close it and count the offence.
			gate.Offence(addr, "loop-client", "too_large", 1)
			gate.Release(addr)
		}
	}
	fmt.Println(gate.Admit(addr))
	// Output:
	// banned 192.0.2.7 loop-client too_large 1
	// false banned
}
