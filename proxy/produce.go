package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
	"github.com/kafkaguard/kafkaguard/limits"
)

const (
	// maxRejectPartitions bounds the topic-partitions a rejected Produce may
	// name. Nothing is remembered per partition (the answer is written as
	// they are read), and MaxLocalAnswerBytes closes a request long before
	// this; it only stops a count that is absurd on its face.
	maxRejectPartitions = 100000
)

// reject answers a Produce over its limit. With acks=0 the client expects
// no answer, and a frame over limits.max_drain_bytes is not worth reading:
// both close the connection, as Kafka does. Otherwise the body is read
// through (one chunk of scratch, records skipped) and answered with
// MESSAGE_TOO_LARGE for every topic-partition, in its turn behind the
// responses still owed, and the connection stays open. The answer is
// written into pooled chunks while the request is read and must fit
// MaxLocalAnswerBytes, or the connection is closed answer_too_large.
func (c *conn) reject(h framing.RequestHeader, size int32, start time.Time) bool {
	pol := c.s.live().Policy
	limitErr := fmt.Errorf("%w: Produce v%d of %d bytes, limit %d", framing.ErrFrameTooLarge, h.APIVersion, size, pol.Limit(h.APIKey))
	if h.APIKey != framing.KeyProduce {
		c.refuse(reasonTooLarge, framing.APIName(h.APIKey), limitErr)
		return false
	}
	deadline := start.Add(c.s.live().FrameTimeout)
	total := 4 + int(size)
	acks, ok := c.peekAcks(h, total, deadline)
	if !ok {
		return false
	}
	if acks == 0 || !pol.Drainable(size) {
		c.refuse(reasonTooLarge, "Produce", limitErr)
		return false
	}
	scratch, ok := c.getChunk()
	if !ok {
		return false
	}
	c.req.more = append(c.req.more, scratch)
	defer c.putChunks()
	inFrame := min(c.req.buf.buffered(), total)
	rest := &io.LimitedReader{R: c.client, N: int64(total - inFrame)}
	body := io.MultiReader(bytes.NewReader(c.req.buf.unread()[4+h.Len:inFrame]), rest)
	c.req.buf.consume(inFrame)
	c.setReadDeadline(deadline)
	// A reader per rejected frame: it keeps its scratch, and the scratch
	// chunk goes back to the pool when this frame is done. The answer is
	// written into pooled chunks as the topics and partitions are read, so
	// nothing is held per partition and the answer never passes
	// MaxLocalAnswerBytes: a request naming more closes the connection.
	c.req.prod = framing.NewProduceReader(body, h.APIVersion, scratch, maxRejectPartitions)
	defer func() { c.req.prod = nil }()
	req := &c.req.prodReq
	req.Version = h.APIVersion
	ans := &answer{c: c}
	err := ans.begin()
	var pa *framing.ProduceAnswer
	if err == nil {
		pa, err = framing.NewProduceAnswer(ans, h.APIVersion, h.CorrelationID, framing.CodeMessageTooLarge)
	}
	if err == nil {
		err = c.req.prod.Walk(req, pa)
	}
	if err == nil {
		err = pa.Finish()
	}
	if err == nil {
		// Whatever the reader left (it stops at the request's last tag) is
		// read through too, so the next frame starts where the client
		// thinks it does.
		_, err = io.CopyBuffer(io.Discard, onlyReader{rest}, scratch)
	}
	c.in.Add(int64(total-inFrame) - rest.N)
	if err != nil {
		ans.release()
		c.rejectFailed(err, limitErr)
		return false
	}
	ans.seal()
	c.s.metrics.reject(reasonTooLargeAnswered, "Produce")
	c.s.metrics.local("Produce", "MESSAGE_TOO_LARGE")
	c.warn(reasonTooLargeAnswered, "Produce", c.req.clientID, fmt.Errorf("%w; answered MESSAGE_TOO_LARGE", limitErr))
	banned := c.charge(reasonTooLargeAnswered, c.req.clientID)
	c.holdSince.Store(0) // read whole: from here on it waits on the queue, not the client
	if c.answerFreed == nil {
		c.answerFreed = make(chan struct{}, 1)
	}
	ans.queued()
	if !c.enqueue(inflightReq{corr: h.CorrelationID, key: h.APIKey, version: h.APIVersion, local: ans}) {
		ans.release()
		c.setReason(reasonUpstreamClosed, nil)
		return false
	}
	if banned {
		// This answer earned the source a ban: deliver it, then end the
		// connection like every other connection of a banned source.
		c.setReason(reasonBanned, nil)
		return false
	}
	return true
}

// rejectFailed ends the connection whose oversized Produce could not be
// read through and answered.
func (c *conn) rejectFailed(err, limitErr error) {
	switch timeout, eof := classifyIO(err); {
	case errors.Is(err, errAnswerTooLarge):
		c.refuse(reasonAnswerTooLarge, "Produce",
			fmt.Errorf("%w; the answer would be over %d bytes: %w", limitErr, c.s.live().MaxLocalAnswerBytes, err))
	case errors.Is(err, limits.ErrPoolExhausted), errors.Is(err, limits.ErrPoolClosed):
		c.poolSpent("Produce", err)
	case timeout || eof:
		c.readFailed(err, reasonFrameTimeout, "Produce")
	default:
		c.refuse(reasonMalformedBody, "Produce", err)
	}
}

// onlyReader hides WriterTo so io.CopyBuffer uses the given chunk.
type onlyReader struct{ io.Reader }
