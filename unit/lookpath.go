package unit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotInPath is wrapped by LookPath's error for a name found nowhere.
var ErrNotInPath = errors.New("not found in PATH")

// LookPath finds the program that a bare command name in exec[0] or
// agent[0] runs: the first executable regular file called name in the
// directories of path, a PATH value. Relative directories (and empty ones,
// which mean ".") are skipped: what they find would depend on the working
// directory. A path (a name with a slash; on Windows also a backslash or a
// drive) is returned as it is; on Windows a name without an extension is
// tried with each of PATHEXT.
func LookPath(name, path string) (string, error) {
	return lookPath(name, path, os.Stat)
}

// lookPath is LookPath with stat for the file system.
func lookPath(name, path string, stat func(string) (fs.FileInfo, error)) (string, error) {
	if isPath(name) {
		return name, nil
	}
	if name == "" {
		return "", errors.New("empty command name")
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		for _, p := range execNames(filepath.Join(dir, name)) {
			if fi, err := stat(p); err == nil && executable(fi) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s: %w", name, ErrNotInPath)
}
