//go:build unix

package webauth

import (
	"errors"
	"os"
	"syscall"
)

// chownLike gives f the owner and group of the file or directory at path, so
// that tokens rotated by root stay readable by a daemon running as another
// user. A process that may not chown (not root) keeps its own.
func chownLike(f *os.File, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || (int(st.Uid) == os.Geteuid() && int(st.Gid) == os.Getegid()) {
		return nil
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, syscall.EPERM) {
		return err
	}
	return nil
}
