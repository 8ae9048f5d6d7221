// Package atomicfile replaces files so that a reader, or the file system
// after a crash, sees the old content or the new, never a part. It never
// locks: callers that may write one path at once serialise themselves.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data: it writes a temporary file in the same
// directory, with mode, fsyncs it, renames it over path and fsyncs the
// directory. On error path is left as it was and the temporary file is
// removed.
func Write(path string, data []byte, mode fs.FileMode) error {
	return WriteWith(path, data, mode, nil)
}

// WriteWith is Write that calls prepare, unless nil, on the temporary file
// once its mode is set and before data is written: to give it an owner, say.
func WriteWith(path string, data []byte, mode fs.FileMode, prepare func(*os.File) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if prepare != nil {
		if err := prepare(tmp); err != nil {
			return fail(err)
		}
	}
	if _, err := tmp.Write(data); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
