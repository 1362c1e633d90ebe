package framing

import (
	"encoding/binary"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// AppendProduceError appends to dst a complete Produce response frame (size
// prefix, response header v0, or v1 from v9, and body) at req.Version that
// answers every topic-partition of req with the error code code, and
// returns the extended slice. The proxy uses it to refuse an oversized
// Produce with MESSAGE_TOO_LARGE (kerr.MessageTooLarge.Code, 10): a Java
// producer then splits the batch, or fails a single record for good,
// instead of retrying forever. The caller must not send it for acks=0,
// which expects no response.
//
// Offsets and times are -1 and the throttle is 0, as a broker answers a
// partition it refused; v13 responses name topics by TopicID.
func AppendProduceError(dst []byte, correlationID int32, req *ProduceRequest, code int16) []byte {
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
