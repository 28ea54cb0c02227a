//go:build unix

package authorizer

import (
	"os"
	"syscall"
)

// inode is the file's inode number: a file replaced by another of the same
// size and modification time (a Secret's symlink swapped) is still told
// apart.
func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Ino)
	}
	return 0
}
