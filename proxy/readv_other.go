//go:build !linux

package proxy

import "time"

// Elsewhere than Linux there is no readv store path: frames are stored in
// chunks one Read at a time.

// readver is empty: nothing is read with readv.
type readver struct{}

func (c *conn) readvTCP() bool { return false }

func (c *conn) storeReadv(int, time.Time, string) bool { return false }
