package proctrack

import (
	"bytes"
	"encoding/binary"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
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
	st, ok := statOf(pid)
	if !ok || st.state == 'Z' || st.state == 'X' {
		return procInfo{}, false
	}
	return procInfo{pid: pid, pgid: st.pgid, start: st.start}, true
}

// stat is the part of /proc/PID/stat the tracker uses.
type stat struct {
	state      byte
	ppid, pgid int
	start      uint64 // clock ticks since boot
}

// statLen bounds the read of /proc/PID/stat: the fields used come within
// the first few hundred bytes, whatever the command's name.
const statLen = 2048

// statOf reads /proc/PID/stat into a buffer on the stack: a process is
// looked up on every start, and every process at a sweep, without garbage.
// ok is false when the process is gone or the line does not read.
func statOf(pid int) (stat, bool) {
	var path [32]byte
	fd, err := openPath(append(strconv.AppendInt(append(path[:0], "/proc/"...), int64(pid), 10), "/stat\x00"...))
	if err != nil {
		return stat{}, false
	}
	var buf [statLen]byte
	n := 0
	for n < len(buf) {
		k, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || k <= 0 {
			break
		}
		n += k
	}
	unix.Close(fd)
	return parseStat(buf[:n])
}

// parseStat reads state (field 3), ppid (4), pgid (5) and starttime (22).
// The command's name may hold spaces and parens: the fields start after
// the last ')'.
func parseStat(b []byte) (stat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, false
	}
	b = b[i+1:]
	var st stat
	got := 0
	for field := 3; field <= 22; field++ {
		for len(b) > 0 && isSpace(b[0]) {
			b = b[1:]
		}
		j := 0
		for j < len(b) && !isSpace(b[j]) {
			j++
		}
		if j == 0 {
			return stat{}, false
		}
		f := b[:j]
		b = b[j:]
		switch field {
		case 3:
			if len(f) != 1 {
				return stat{}, false
			}
			st.state = f[0]
			got++
		case 4, 5:
			neg := f[0] == '-'
			if neg {
				f = f[1:]
			}
			v, ok := parseUint(f)
			if !ok {
				return stat{}, false
			}
			n := int(v)
			if neg {
				n = -n
			}
			if field == 4 {
				st.ppid = n
			} else {
				st.pgid = n
			}
			got++
		case 22:
			v, ok := parseUint(f)
			if !ok {
				return stat{}, false
			}
			st.start = v
			got++
		}
	}
	return st, got == 4
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' }

// parseUint parses decimal digits.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// procReader reads /proc for the passes that look for markers, through
// buffers it keeps: after the first pass, listing the processes and reading
// one's environment allocate nothing. One goroutine uses it at a time.
type procReader struct {
	dirents []byte
	pids    []int
	known   []knownPID
	path    []byte
	env     []byte
}

// knownPID is a pid a pass did not read: the main process of run.
type knownPID struct {
	pid int
	run *Run
}

// list returns the pids in /proc, without this process; the slice is
// reused by the next call.
func (pr *procReader) list() []int {
	pr.pids = pr.pids[:0]
	fd, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	if pr.dirents == nil {
		pr.dirents = make([]byte, 32<<10)
	}
	self := os.Getpid()
	for {
		n, err := unix.Getdents(fd, pr.dirents)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return pr.pids
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for b := pr.dirents[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			if reclen < 19 || reclen > len(b) {
				break
			}
			if pid := atoiName(b[19:reclen]); pid > 0 && pid != self {
				pr.pids = append(pr.pids, pid)
			}
			b = b[reclen:]
		}
	}
}

// atoiName parses a NUL-terminated directory name made of digits only; 0
// for anything else.
func atoiName(b []byte) int {
	n := 0
	for i, c := range b {
		if c == 0 {
			if i == 0 {
				return 0
			}
			return n
		}
		if c < '0' || c > '9' || n > 1<<30 {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// marker returns the value of the marker variable in a process's
// environment (its first occurrence), nil if it has none or cannot be read.
// The value is valid until the next call.
func (pr *procReader) marker(pid int) []byte {
	pr.path = append(strconv.AppendInt(append(pr.path[:0], "/proc/"...), int64(pid), 10), "/environ\x00"...)
	fd, err := openPath(pr.path)
	if err != nil {
		return nil
	}
	if pr.env == nil {
		pr.env = make([]byte, 16<<10)
	}
	n := 0
	for n < maxEnviron {
		if n == len(pr.env) {
			pr.env = append(pr.env, make([]byte, min(len(pr.env), maxEnviron-n))...)
		}
		k, err := unix.Read(fd, pr.env[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil || k <= 0 {
			break
		}
		n += k
		// A short read that ends a string is the end of the environment:
		// no second read to learn it.
		if n < len(pr.env) && pr.env[n-1] == 0 {
			break
		}
	}
	unix.Close(fd)
	env := pr.env[:n]
	const prefix = MarkerVar + "="
	i := 0
	if !bytes.HasPrefix(env, []byte(prefix)) {
		i = bytes.Index(env, []byte("\x00"+prefix))
		if i < 0 {
			return nil
		}
		i++
	}
	v := env[i+len(prefix):]
	if j := bytes.IndexByte(v, 0); j >= 0 {
		v = v[:j]
	}
	return v
}

// openPath opens a NUL-terminated path read-only, without the copy
// unix.Open makes of it.
func openPath(path []byte) (int, error) {
	cwd := unix.AT_FDCWD // the path is absolute
	for {
		fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(cwd), uintptr(unsafe.Pointer(&path[0])), uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(fd), nil
	}
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
