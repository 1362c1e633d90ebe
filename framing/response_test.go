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
	if code != 10 {
		t.Fatalf("kerr.MessageTooLarge.Code = %d", code)
	}
	prefix := []byte("already here")
	for v := int16(0); v <= 13; v++ {
		for _, c := range produceCases {
			t.Run(fmt.Sprintf("v%d/%s", v, c.name), func(t *testing.T) {
				req := c.want(v)
				out := AppendProduceError(append([]byte(nil), prefix...), 0x01020304, &req, code)
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
