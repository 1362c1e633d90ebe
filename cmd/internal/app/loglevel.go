package app

import (
	"io"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// LogLevel is the level a logger from NewLevelLogger writes at, changeable while it runs (log.level is
// reloaded). zerolog fixes a Logger's level when it is made, and the App's logger is copied into every
// part of kafkaguard, so the level is applied where the lines are written instead: the logger passes
// every level down and the writer drops what is below this one. kafkaguard writes no debug line on the
// data path, so nothing is built only to be dropped.
type LogLevel struct{ v atomic.Int32 }

// Set changes the level; a name zerolog does not know (Validate refuses it) leaves it as it is.
func (l *LogLevel) Set(name string) {
	if lvl, err := zerolog.ParseLevel(name); err == nil {
		l.v.Store(int32(lvl))
	}
}

// String names the level in force.
func (l *LogLevel) String() string { return zerolog.Level(l.v.Load()).String() }

// levelWriter drops lines below its level.
type levelWriter struct {
	w   io.Writer
	lvl *LogLevel
}

func (w levelWriter) Write(p []byte) (int, error) { return w.w.Write(p) }

// WriteLevel is what zerolog calls for every line with its level.
func (w levelWriter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	if l != zerolog.NoLevel && l < zerolog.Level(w.lvl.v.Load()) {
		return len(p), nil
	}
	return w.w.Write(p)
}
