//go:build !unix

package proxy

import "os"

// stampOf identifies a file by mtime and size where there is no inode.
func stampOf(fi os.FileInfo) fileStamp {
	return fileStamp{mtime: fi.ModTime().UnixNano(), size: fi.Size()}
}
