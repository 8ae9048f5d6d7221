package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/gofrs/flock"
)

// stateLockName is the file in the state directory that the daemon holds an
// exclusive lock on for its whole life, with its pid written in it.
const stateLockName = "daemon.lock"

// lockState takes the state directory for this daemon. A second daemon on the
// same directory is refused at once; readers of the state (chains, validate)
// never take this lock. The returned function releases it.
func lockState(dir string) (func(), error) {
	path := filepath.Join(dir, stateLockName)
	lk := flock.New(path, flock.SetPermissions(0o640))
	ok, err := lk.TryLock()
	if err != nil {
		return nil, fmt.Errorf("state directory %s: lock %s: %v (check its permissions, or use --state)", dir, path, err)
	}
	if !ok {
		holder := "another process"
		if pid := stateHolder(dir); pid > 0 {
			holder = "pid " + strconv.Itoa(pid)
		}
		return nil, fmt.Errorf("state directory %s is in use by %s (stop it, or use --state)", dir, holder)
	}
	// The lock belongs to the open file, not the path: the pid is written
	// through a second descriptor of the same file, for the next one to read.
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
		f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
		f.Close()
	}
	return func() { lk.Unlock() }, nil
}

// stateHolder is the pid the daemon on the state directory wrote in its
// lock, 0 if none can be read.
func stateHolder(dir string) int {
	b, err := readBounded(filepath.Join(dir, stateLockName), 64)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// readBounded reads at most n bytes of a file.
func readBounded(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := f.Read(b)
	if k > 0 {
		return b[:k], nil
	}
	return nil, err
}
