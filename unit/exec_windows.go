package unit

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// executable reports whether fi is a regular file; whether it runs is
// decided when the unit starts.
func executable(fi fs.FileInfo) bool {
	return fi.Mode().IsRegular()
}

// isPath reports whether exec[0] names a path rather than a command in PATH:
// it has a separator of either kind or a drive.
func isPath(name string) bool { return strings.ContainsAny(name, `/\:`) }

// execNames are the files a program path p may be: p itself when it has an
// extension, else p with each extension of PATHEXT, as Windows looks.
func execNames(p string) []string {
	if filepath.Ext(p) != "" {
		return []string{p}
	}
	var out []string
	for _, e := range strings.Split(os.Getenv("PATHEXT"), ";") {
		if strings.HasPrefix(e, ".") {
			out = append(out, p+strings.ToLower(e))
		}
	}
	if len(out) == 0 {
		for _, e := range []string{".com", ".exe", ".bat", ".cmd"} {
			out = append(out, p+e)
		}
	}
	return out
}
