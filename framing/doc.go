// Package framing reads the Kafka wire protocol as far as a guarding proxy
// must and no further: it classifies a connection's first bytes (Sniff),
// judges a frame's size prefix before anything else is read (CheckSize),
// parses request headers without allocating (ParseRequestHeader) and finds
// where response headers end (ResponseHeaderLen), knows each api's header
// version from kmsg's tables (HeaderVersion, APIName), streams a Produce
// body to learn its acks, topics and partitions while skipping the records
// through a caller's scratch buffer (ProduceReader), and builds the local
// MESSAGE_TOO_LARGE answer (ProduceAnswer, which streams it to a bounded
// writer while ProduceReader.Walk reads the request, holding nothing per
// partition). It is the one place that knows api keys (KeyProduce and the
// rest, from kmsg), their names (APIName, KeyForName) and the versions
// kafkaguard serves (MaxVersion, ServesVersion). Before a response is decoded to rewrite
// it, ResponseCost walks its shape, refuses counts its bytes cannot hold and
// bounds what kmsg will allocate. No length read off the wire is ever used
// to size an allocation: every one is checked against a bound first, and
// bulk bytes only pass through fixed buffers. For SASL it reads the
// handshake and authenticate messages, the user name a PLAIN or SCRAM token
// shows (SaslPrincipal), and follows the header-less token frames of a
// SaslHandshake v0 exchange (SaslV0). The package
// starts no goroutines and keeps no global mutable state.
//
// A client-to-broker pump uses it like this (errors and pooling elided):
//
//	var size [framing.SizeLen]byte
//	io.ReadFull(conn, size[:])
//	if p := framing.Sniff(size); p != framing.ProtoKafka {
//		return fmt.Errorf("read request size: looks like %s", p)
//	}
//	n := int32(binary.BigEndian.Uint32(size[:]))
//	if err := framing.CheckSize(n, maxRequest); err != nil {
//		return err
//	}
//	buf := make([]byte, min(int(n), chunkSize))
//	io.ReadFull(conn, buf) // or read a little at a time while ErrIncomplete
//	h, err := framing.ParseRequestHeader(buf, n, maxClientID)
//	if h.APIKey == framing.KeyProduce && err == nil { // learn acks and partitions
//		body := &io.LimitedReader{
//			R: io.MultiReader(bytes.NewReader(buf[h.Len:]), conn),
//			N: int64(n) - int64(h.Len),
//		}
//		pr := framing.NewProduceReader(body, h.APIVersion, chunk, maxPartitions)
//		var req framing.ProduceRequest
//		if err := pr.Head(&req); err == nil && req.Acks != 0 {
//			pa, _ := framing.NewProduceAnswer(w, h.APIVersion, h.CorrelationID, 10)
//			if pr.Walk(&req, pa) == nil {
//				pa.Finish() // w now holds the MESSAGE_TOO_LARGE answer
//			}
//		}
//	}
package framing
