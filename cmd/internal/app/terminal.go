package app

import (
	"io"
	"os"
)

// colourful reports whether console logs to w may carry colour: w is a terminal (a character device;
// pipes, files and buffers are not) and NO_COLOR (no-color.org) is unset.
func colourful(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
