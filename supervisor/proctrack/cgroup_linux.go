package proctrack

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ownCgroup finds the cgroup v2 directory this process belongs to: the
// unified hierarchy's mount point (/sys/fs/cgroup, or /sys/fs/cgroup/unified
// on a hybrid setup) joined with the "0::" line of /proc/self/cgroup.
func ownCgroup() (string, error) {
	b, err := readBounded("/proc/self/cgroup", 64<<10)
	if err != nil {
		return "", err
	}
	var rel string
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			rel, found = strings.TrimSuffix(p, " (deleted)"), true
			break
		}
	}
	if !found {
		return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer mi.Close()
	sc := bufio.NewScanner(mi)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPEROPTS
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		root, mnt := unescapeMount(f[3]), unescapeMount(f[4])
		// In a cgroup namespace the mount's root is where the namespace
		// starts; /proc/self/cgroup is relative to it already.
		if root != "/" {
			if r, ok := strings.CutPrefix(rel, root); ok {
				rel = r
			}
		}
		return filepath.Join(mnt, rel), nil
	}
	return "", errors.New("cgroup v2 is not mounted")
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupProcs lists the pids in a cgroup.
func cgroupProcs(dir string) []int {
	b, err := readBounded(filepath.Join(dir, "cgroup.procs"), 4<<20)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range bytes.Fields(b) {
		if pid, err := strconv.Atoi(string(f)); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killCgroup kills every process in a cgroup and below: cgroup.kill where
// the kernel has it, else SIGKILL to each listed pid until none is left.
// It returns the pids that were in it.
func killCgroup(dir string) []int {
	pids := allCgroupProcs(dir)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err == nil {
		return pids
	}
	seen := make(map[int]bool)
	for range 100 {
		now := allCgroupProcs(dir)
		if len(now) == 0 {
			break
		}
		for _, pid := range now {
			seen[pid] = true
			kill(pid, syscall.SIGKILL)
		}
	}
	for pid := range seen {
		if !containsInt(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// allCgroupProcs lists the pids of a cgroup and every cgroup below it.
func allCgroupProcs(dir string) []int {
	pids := cgroupProcs(dir)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			pids = append(pids, allCgroupProcs(filepath.Join(dir, e.Name()))...)
		}
	}
	return pids
}

// signalCgroup sends sig to every process of a cgroup and below.
func signalCgroup(dir string, sig syscall.Signal) {
	for _, pid := range allCgroupProcs(dir) {
		kill(pid, sig)
	}
}

// removeCgroup removes a cgroup and the ones below it, once they are empty;
// it waits for that up to the deadline.
func removeCgroup(dir string, deadline time.Time) error {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroup(filepath.Join(dir, e.Name()), deadline)
		}
	}
	delay := time.Millisecond
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		time.Sleep(delay) // the kernel empties a killed cgroup asynchronously; bounded by deadline
		delay = min(2*delay, 50*time.Millisecond)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
