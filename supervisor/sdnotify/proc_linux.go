package sdnotify

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// maxDepth bounds the ppid walk, so a chain read while processes come and go cannot loop.
const maxDepth = 4096

// IsDescendant reports whether pid is a child, grandchild, … of ancestor, following the parent pid in
// /proc/<pid>/stat. A process is not its own descendant: to accept the ancestor too, compare the pids
// first. It is false when either process is gone or /proc cannot be read. A process whose parent died
// was re-parented (to the subreaper or init) and is no longer found under its old ancestor; to decide
// about the sender of a notification, call it from the handler while the sender still waits on its
// barrier.
func IsDescendant(pid, ancestor int) bool {
	return isDescendant("/proc", pid, ancestor)
}

// MaxAncestors bounds Ancestors.
const MaxAncestors = 64

// Ancestors returns the parent, grandparent, … of pid up to init (not included), at most
// MaxAncestors of them; nil when pid is gone.
func Ancestors(pid int) []int {
	return ancestors("/proc", pid)
}

func ancestors(procRoot string, pid int) []int {
	var out []int
	for len(out) < MaxAncestors && pid > 1 {
		ppid, ok := parentPID(procRoot, pid)
		if !ok || ppid <= 1 {
			break
		}
		out = append(out, ppid)
		pid = ppid
	}
	return out
}

func isDescendant(procRoot string, pid, ancestor int) bool {
	if pid <= 0 || ancestor <= 0 || pid == ancestor {
		return false
	}
	for range maxDepth {
		ppid, ok := parentPID(procRoot, pid)
		if !ok || ppid <= 0 {
			return false
		}
		if ppid == ancestor {
			return true
		}
		pid = ppid
	}
	return false
}

// parentPID reads the fourth field of procRoot/<pid>/stat. The second field, the command name in
// parentheses, may itself hold spaces and parentheses, so parsing starts after the last ')'.
func parentPID(procRoot string, pid int) (int, bool) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	fields := bytes.Fields(data[i+1:]) // state, ppid, …
	if len(fields) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(string(fields[1]))
	if err != nil {
		return 0, false
	}
	return ppid, true
}
