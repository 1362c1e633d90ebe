package framing

import "fmt"

// SizeLen is the number of bytes of the big-endian int32 length prefix that
// starts every Kafka frame. The size does not count these bytes.
const SizeLen = 4

// MinRequestSize is the smallest legal request body: api key, api version and
// correlation id (request header v0, used only by ControlledShutdown v0).
const MinRequestSize = 8

// CheckSize judges a declared request size before anything more is read, so
// that nothing is ever allocated or awaited for a size that is already
// wrong. It returns ErrNegativeSize, ErrFrameTooSmall or ErrFrameTooLarge,
// the latter two wrapped with the numbers, or nil.
func CheckSize(size, max int32) error {
	switch {
	case size < 0:
		return fmt.Errorf("%w: %d", ErrNegativeSize, size)
	case size < MinRequestSize:
		return fmt.Errorf("%w: %d < %d", ErrFrameTooSmall, size, MinRequestSize)
	case size > max:
		return fmt.Errorf("%w: %d > %d", ErrFrameTooLarge, size, max)
	}
	return nil
}
