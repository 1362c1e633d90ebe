package proxy

import "time"

// CheckNow looks at the files at once (a config reload asks for it), rather than at the next check due
// after CheckEvery: a rotated certificate is then in force for the next handshake.
func (t *TLSFiles) CheckNow() {
	t.nextCheck.Store(0)
	t.maybeReload(time.Now())
}
