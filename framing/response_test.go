package framing

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestAppendProduceError(t *testing.T) {
	code := kerr.MessageTooLarge.Code
	if code != CodeMessageTooLarge {
		t.Fatalf("kerr.MessageTooLarge.Code = %d, CodeMessageTooLarge %d", code, CodeMessageTooLarge)
	}
	prefix := []byte("already here")
	for v := int16(0); v <= 13; v++ {
		for _, c := range produceCases {
			t.Run(fmt.Sprintf("v%d/%s", v, c.name), func(t *testing.T) {
				req := c.want(v)
				out := appendProduceError(append([]byte(nil), prefix...), 0x01020304, &req, code)
				if string(out[:len(prefix)]) != string(prefix) {
					t.Fatal("dst prefix overwritten")
				}
				frame := out[len(prefix):]
				if size := binary.BigEndian.Uint32(frame); int(size) != len(frame)-SizeLen {
					t.Fatalf("size prefix %d, frame body %d", size, len(frame)-SizeLen)
				}
				body := frame[SizeLen:]
				hl, err := ResponseHeaderLen(body, 0, v)
				if err != nil {
					t.Fatal(err)
				}
				if want := map[bool]int{false: 4, true: 5}[v >= 9]; hl != want {
					t.Fatalf("response header %d bytes, want %d", hl, want)
				}
				if corr := int32(binary.BigEndian.Uint32(body)); corr != 0x01020304 {
					t.Fatalf("correlation id %#x", corr)
				}
				if hl == 5 && body[4] != 0 {
					t.Fatalf("header tag count %d, want 0", body[4])
				}

				resp := kmsg.NewPtrProduceResponse()
				resp.Version = v
				if err := resp.ReadFrom(body[hl:]); err != nil {
					t.Fatalf("kmsg cannot read the response: %v", err)
				}
				if !equalBytes(resp.AppendTo(nil), body[hl:]) {
					t.Fatal("response has bytes kmsg does not account for")
				}
				if resp.ThrottleMillis != 0 {
					t.Errorf("throttle %d", resp.ThrottleMillis)
				}
				if len(resp.Topics) != len(req.Topics) {
					t.Fatalf("%d topics, want %d", len(resp.Topics), len(req.Topics))
				}
				for i, rt := range resp.Topics {
					want := req.Topics[i]
					if rt.Topic != want.Name || rt.TopicID != want.TopicID {
						t.Errorf("topic %d: %q %x, want %q %x", i, rt.Topic, rt.TopicID, want.Name, want.TopicID)
					}
					if len(rt.Partitions) != len(want.Partitions) {
						t.Fatalf("topic %d: %d partitions, want %d", i, len(rt.Partitions), len(want.Partitions))
					}
					for j, rp := range rt.Partitions {
						if rp.Partition != want.Partitions[j] || rp.ErrorCode != code ||
							rp.BaseOffset != -1 || (v >= 2 && rp.LogAppendTime != -1) || (v >= 5 && rp.LogStartOffset != -1) {
							t.Errorf("topic %d partition %d: %+v", i, j, rp)
						}
					}
				}
			})
		}
	}
}

func equalBytes(a, b []byte) bool { return string(a) == string(b) }

// appendProduceError appends to dst a complete Produce response frame (size
// prefix, response header v0, or v1 from v9, and body) at req.Version that
// answers every topic-partition of req with the error code code, and
// returns the extended slice, built with kmsg: the reference the streamed
// ProduceAnswer is checked against. An oversized Produce is refused with
// MESSAGE_TOO_LARGE (kerr.MessageTooLarge.Code, 10): a Java
// producer then splits the batch, or fails a single record for good,
// instead of retrying forever. The caller must not send it for acks=0,
// which expects no response.
//
// Offsets and times are -1 and the throttle is 0, as a broker answers a
// partition it refused; v13 responses name topics by TopicID.
func appendProduceError(dst []byte, correlationID int32, req *ProduceRequest, code int16) []byte {
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = req.Version
	resp.Topics = make([]kmsg.ProduceResponseTopic, len(req.Topics))
	for i, t := range req.Topics {
		rt := &resp.Topics[i]
		rt.Default()
		rt.Topic = t.Name
		rt.TopicID = t.TopicID
		rt.Partitions = make([]kmsg.ProduceResponseTopicPartition, len(t.Partitions))
		for j, part := range t.Partitions {
			rp := &rt.Partitions[j]
			rp.Default()
			rp.Partition = part
			rp.ErrorCode = code
			rp.BaseOffset = -1
			rp.LogAppendTime = -1
			rp.LogStartOffset = -1
		}
	}

	start := len(dst)
	dst = append(dst, 0, 0, 0, 0) // size, filled in below
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if resp.IsFlexible() {
		dst = append(dst, 0) // response header v1: no tagged fields
	}
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-SizeLen))
	return dst
}
