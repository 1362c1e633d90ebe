//go:build unix

package proxy

import (
	"os"
	"syscall"
)

// stampOf identifies a file by mtime, size, inode and device: a Kubernetes
// symlink swap changes the inode even when the new file has the same size
// and, to the second, the same mtime.
func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{mtime: fi.ModTime().UnixNano(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino, s.dev = uint64(st.Ino), uint64(st.Dev)
	}
	return s
}
