package framing

import "errors"

// Sentinel errors. Callers test for them with errors.Is; the functions that
// return them may wrap them with the numbers that caused them.
var (
	// ErrNegativeSize is a size prefix with the sign bit set. No Kafka client
	// sends one; it is usually a non-Kafka protocol (an SSLv2 hello, say).
	ErrNegativeSize = errors.New("negative frame size")
	// ErrFrameTooSmall is a size prefix too small to hold a request header.
	ErrFrameTooSmall = errors.New("frame smaller than a request header")
	// ErrFrameTooLarge is a size prefix over the configured limit.
	ErrFrameTooLarge = errors.New("frame larger than the limit")
	// ErrIncomplete means a header parse needs more bytes. It is not an
	// offence by itself: the caller reads more and calls again.
	ErrIncomplete = errors.New("incomplete header")
	// ErrMalformedHeader is a request header that no Kafka client would
	// send: a client id length below -1, a bad uvarint, or tagged fields
	// that run past the frame or over MaxTaggedLen.
	ErrMalformedHeader = errors.New("malformed request header")
	// ErrMalformedResponseHeader is a response header whose tagged fields
	// are bad uvarints or run over MaxTaggedLen.
	ErrMalformedResponseHeader = errors.New("malformed response header")
	// ErrClientIDTooLong is a client id length over the caller's limit. It is
	// reported as soon as the length is visible, before the id arrives.
	ErrClientIDTooLong = errors.New("client id longer than the limit")
	// ErrClientIDOverrun is a client id length that runs past the frame.
	ErrClientIDOverrun = errors.New("client id runs past the frame")

	// ErrMalformedProduce is a Produce body that cannot be read: a length
	// that runs past the body or is absurd, a bad uvarint, trailing bytes.
	ErrMalformedProduce = errors.New("malformed produce request")
	// ErrTooManyPartitions is a Produce request naming more partitions (or
	// topics) in all than the reader was told to accept.
	ErrTooManyPartitions = errors.New("produce request names too many partitions")
	// ErrUnsupportedVersion is a Produce version this package cannot read
	// (negative, or above the highest version kmsg knows).
	ErrUnsupportedVersion = errors.New("unsupported produce version")
)
