package proctrack

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// maxEnviron bounds how much of a process's environment is read when looking
// for the marker.
const maxEnviron = 256 << 10

// procInfo is what /proc says about one process.
type procInfo struct {
	pid   int
	pgid  int
	start uint64 // clock ticks since boot
}

// readStat reads pid, pgid and start time from /proc/PID/stat. ok is false
// for a process that is gone or a zombie.
func readStat(pid int) (procInfo, bool) {
	b, err := readBounded("/proc/"+strconv.Itoa(pid)+"/stat", 4096)
	if err != nil {
		return procInfo{}, false
	}
	// comm may hold spaces and parens: the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); pgid is field 5, starttime field 22.
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return procInfo{}, false
	}
	pgid, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procInfo{}, false
	}
	return procInfo{pid: pid, pgid: pgid, start: start}, true
}

// allPIDs lists the pids in /proc, without this process.
func allPIDs() []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	self := os.Getpid()
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 && pid != self {
			pids = append(pids, pid)
		}
	}
	return pids
}

// markerOf returns the value of the marker variable in a process's
// environment, "" if it has none or cannot be read.
func markerOf(pid int) string {
	b, err := readBounded("/proc/"+strconv.Itoa(pid)+"/environ", maxEnviron)
	if err != nil {
		return ""
	}
	prefix := []byte(MarkerVar + "=")
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			return string(v)
		}
	}
	return ""
}

// readBounded reads at most n bytes of a file.
func readBounded(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 0, min(n, 4096))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		k, err := f.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil {
			break
		}
	}
	return buf, nil
}

// kill sends sig to pid; a process that is gone is not an error.
func kill(pid int, sig syscall.Signal) {
	syscall.Kill(pid, sig)
}
