//go:build !linux

package proxy

import (
	"time"

	"github.com/kafkaguard/kafkaguard/framing"
)

// Elsewhere than Linux there is no splice: every frame is stored in chunks.

// maxPipesFree is how many empty pipes are kept: none.
const maxPipesFree = 0

// pipes is empty: no pipe is ever open.
type pipes struct {
	open zero
	max  int
}

type zero struct{}

// splicer is empty: nothing is spliced.
type splicer struct{}

func (zero) Load() int64 { return 0 }

func (*pipes) closeFree() {}

func (c *conn) spliceableTCP() bool { return false }

func (c *conn) forwardPiped(framing.RequestHeader, int, bool, time.Time) (handled, ok bool) {
	return false, false
}

func (c *conn) relayPiped(int64) (handled, ok bool) { return false, false }

func (c *conn) forwardCutPiped(framing.RequestHeader, int, time.Time, func([][]byte) bool) (handled, ok bool) {
	return false, false
}
