package framing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// sampleResponses returns, for a key and version, responses as a broker
// would send them: empty, and with several entries in every array.
func sampleResponses(key, version int16) []kmsg.Response {
	rack, msg, cluster := "rack-1", "not available", "cluster-id"
	empty := kmsg.ResponseForKey(key)
	empty.SetVersion(version)
	full := kmsg.ResponseForKey(key)
	full.SetVersion(version)
	switch r := full.(type) {
	case *kmsg.MetadataResponse:
		r.ClusterID = &cluster
		for i := range int32(3) {
			b := kmsg.NewMetadataResponseBroker()
			b.NodeID, b.Host, b.Port, b.Rack = i, fmt.Sprintf("broker-%d.example", i), 9092, &rack
			r.Brokers = append(r.Brokers, b)
		}
		for i := range 4 {
			t := kmsg.NewMetadataResponseTopic()
			name := fmt.Sprintf("topic-%d", i)
			t.Topic = &name
			t.TopicID = [16]byte{byte(i)}
			for p := range int32(5) {
				pt := kmsg.NewMetadataResponseTopicPartition()
				pt.Partition, pt.Leader = p, p%3
				pt.Replicas, pt.ISR, pt.OfflineReplicas = []int32{0, 1, 2}, []int32{0, 1}, []int32{2}
				t.Partitions = append(t.Partitions, pt)
			}
			r.Topics = append(r.Topics, t)
		}
	case *kmsg.FindCoordinatorResponse:
		r.NodeID, r.Host, r.Port, r.ErrorMessage = 1, "broker-1", 9092, &msg
		for i := range int32(3) {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key, c.NodeID, c.Host, c.Port, c.ErrorMessage = fmt.Sprintf("group-%d", i), i, "broker", 9092, &msg
			r.Coordinators = append(r.Coordinators, c)
		}
	case *kmsg.DescribeClusterResponse:
		r.ClusterID, r.ErrorMessage = cluster, &msg
		for i := range int32(3) {
			b := kmsg.NewDescribeClusterResponseBroker()
			b.NodeID, b.Host, b.Port, b.Rack = i, "broker", 9092, &rack
			r.Brokers = append(r.Brokers, b)
		}
	case *kmsg.ApiVersionsResponse:
		for k := range int16(70) {
			a := kmsg.NewApiVersionsResponseApiKey()
			a.ApiKey, a.MaxVersion = k, 9
			r.ApiKeys = append(r.ApiKeys, a)
		}
		f := kmsg.NewApiVersionsResponseSupportedFeature()
		f.Name, f.MaxVersion = "metadata.version", 20
		r.SupportedFeatures = append(r.SupportedFeatures, f)
	}
	return []kmsg.Response{empty, full}
}

var shapeKeys = []int16{3, 10, 60, 18}

// decodeAlloc returns the bytes kmsg allocates to decode body, and its
// error. TotalAlloc counts every goroutine's allocations (the fuzzing
// engine's too), so it is the least of a few decodes.
func decodeAlloc(key, version int16, body []byte) (uint64, error) {
	least := uint64(math.MaxUint64)
	var err error
	for range 5 {
		r := kmsg.ResponseForKey(key)
		r.SetVersion(version)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err = r.ReadFrom(body)
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(r)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least, err
}

// Every response kmsg writes, at every version, walks: the shapes match
// kmsg's, and the cost bounds what kmsg allocates to decode it.
func TestResponseCostWalksWhatKmsgWrites(t *testing.T) {
	for _, key := range shapeKeys {
		maxV := kmsg.ResponseForKey(key).MaxVersion()
		for v := int16(0); v <= maxV; v++ {
			for i, r := range sampleResponses(key, v) {
				t.Run(fmt.Sprintf("%s/v%d/%d", kmsg.NameForKey(key), v, i), func(t *testing.T) {
					body := r.AppendTo(nil)
					cost, addrs, err := ResponseCost(key, v, body)
					if err != nil {
						t.Fatalf("cost: %v", err)
					}
					got, err := decodeAlloc(key, v, body)
					if err != nil {
						t.Fatalf("kmsg decode: %v", err)
					}
					if int64(got) > cost {
						t.Errorf("kmsg allocated %d bytes, cost said at most %d", got, cost)
					}
					if i == 1 && key != 18 && addrs == 0 {
						t.Errorf("no address entries counted")
					}
				})
			}
		}
	}
}

// The attack of issue 9, defect 7: a body declaring far more brokers (or
// topics, partitions, replicas) than its bytes can hold is refused before
// kmsg allocates for them.
func TestResponseCostRefusesImpossibleCounts(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		name    string
		key, v  int16
		prefix  []byte // what comes before the array count
		flexCnt bool
	}{
		{"Metadata v1 brokers", 3, 1, nil, false},
		{"Metadata v12 brokers", 3, 12, []byte{0, 0, 0, 0}, true},
		{"DescribeCluster v0 brokers", 60, 0, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}, true},
		{"FindCoordinator v4 coordinators", 10, 4, []byte{0, 0, 0, 0}, true},
		{"ApiVersions v0 keys", 18, 0, []byte{0, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := append([]byte(nil), tc.prefix...)
			count := uint32(size - len(body) - 8) // one byte an element: what kmsg lets through
			if tc.flexCnt {
				body = binary.AppendUvarint(body, uint64(count)+1)
			} else {
				body = binary.BigEndian.AppendUint32(body, count)
			}
			body = append(body, make([]byte, size-len(body))...)
			_, _, err := ResponseCost(tc.key, tc.v, body)
			if !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("cost: %v, want ErrMalformedResponse", err)
			}
		})
	}
}

// Whatever the body, ResponseCost never panics, and when it accepts a body
// that kmsg decodes, kmsg allocates no more than the cost.
func FuzzResponseCost(f *testing.F) {
	for _, key := range shapeKeys {
		maxV := kmsg.ResponseForKey(key).MaxVersion()
		for v := int16(0); v <= maxV; v++ {
			for _, r := range sampleResponses(key, v) {
				f.Add(uint8(key), v, r.AppendTo(nil))
			}
		}
	}
	f.Fuzz(func(t *testing.T, k uint8, version int16, body []byte) {
		key := shapeKeys[int(k)%len(shapeKeys)]
		version = ((version % 16) + 16) % 16
		if version > kmsg.ResponseForKey(key).MaxVersion() {
			return
		}
		cost, _, err := ResponseCost(key, version, body)
		if err != nil {
			return
		}
		got, derr := decodeAlloc(key, version, body)
		if derr == nil && int64(got) > cost {
			t.Fatalf("%s v%d: kmsg allocated %d bytes, cost said at most %d", kmsg.NameForKey(key), version, got, cost)
		}
	})
}

// kmsg decodes ApiVersions v3's known tags into feature arrays whose
// length it checks only against the tag's bytes, one byte an element: a tag
// of S bytes declaring S features makes kmsg allocate about 40 × S before it
// fails. The cost must cover that, whatever the tag's elements hold.
func TestResponseCostCoversApiVersionsFeatureTags(t *testing.T) {
	const size = 256 << 10
	for _, tag := range []uint64{0, 2} {
		t.Run(fmt.Sprintf("tag %d", tag), func(t *testing.T) {
			var tagBody []byte
			tagBody = binary.AppendUvarint(tagBody, size+1) // compact array: size elements
			tagBody = append(tagBody, make([]byte, size)...)
			body := []byte{0, 0}            // error code
			body = append(body, 1)          // no api keys (compact array of 0)
			body = append(body, 0, 0, 0, 0) // throttle
			body = append(body, 1)          // one tagged field
			body = binary.AppendUvarint(body, tag)
			body = binary.AppendUvarint(body, uint64(len(tagBody)))
			body = append(body, tagBody...)
			cost, _, err := ResponseCost(18, 3, body)
			if err != nil {
				t.Fatalf("cost: %v", err)
			}
			if raceEnabled {
				t.Skip("the race detector's runtime allocates more than the shipped build")
			}
			got, _ := decodeAlloc(18, 3, body)
			if int64(got) > cost {
				t.Errorf("kmsg allocated %d bytes for a %d-byte body, cost said at most %d", got, len(body), cost)
			}
		})
	}
}
