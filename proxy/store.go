package proxy

import (
	"os"
	"sync"
)

// storePath is how a frame larger than a chunk, stored whole, is held until
// it has fully arrived (issue 14). Every path counts what it holds in the
// pool and takes nothing for bytes that have not arrived; they differ in
// system calls and copies. Options.store picks one for tests and
// benchmarks; the zero value keeps the default.
type storePath uint8

const (
	// storeAuto is the default: storePipe, unless KG_STORE_PATH
	// names another path (a measurement knob, see storeFromEnv).
	storeAuto storePath = iota
	// storePipe moves the body into a kernel pipe with splice (Linux, both
	// sockets plain TCP; forwardPiped), else stores it as storeChunks.
	storePipe
	// storeReadv reads as much as the socket holds into as many chunks as
	// it needs in one readv (Linux, plain TCP client; storeReadv), else
	// stores it as storeChunks.
	storeReadv
	// storeChunks reads the body one Read per chunk: the portable path.
	storeChunks
)

var storeNames = [...]string{storeAuto: "auto", storePipe: "pipe", storeReadv: "readv", storeChunks: "chunks"}

func (p storePath) String() string {
	if int(p) < len(storeNames) {
		return storeNames[p]
	}
	return "unknown"
}

// storeFromEnv is KG_STORE_PATH (pipe, readv or chunks), read once: a
// knob to compare the store paths in the bench's real processes, not a
// setting (no config key; not KAFKAGUARD_, which config reads as keys).
// Anything else, or unset, is storePipe.
var storeFromEnv = sync.OnceValue(func() storePath {
	v := os.Getenv("KG_STORE_PATH")
	for p, name := range storeNames {
		if p != int(storeAuto) && v == name {
			return storePath(p)
		}
	}
	return storePipe
})

// storeWith is the store path in force: Options.store, or the
// environment's.
func (o *Options) storeWith() storePath {
	if o.store != storeAuto {
		return o.store
	}
	return storeFromEnv()
}
