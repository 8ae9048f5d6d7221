package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// argv0 is a process's argv[0]; nil when it is gone or a kernel thread.
func argv0(pid int) []byte {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil
	}
	defer f.Close()
	var buf [512]byte
	n, _ := f.Read(buf[:])
	a, _, _ := bytes.Cut(buf[:n], []byte{0})
	return a
}

// pstat is what the harness needs of /proc/PID/stat.
type pstat struct {
	state byte
	ppid  int
	start uint64 // starttime in clock ticks: with the pid, names one process
}

func readStat(pid int) (pstat, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return pstat{}, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return pstat{}, false
	}
	f := strings.Fields(string(data[i+2:]))
	if len(f) < 20 {
		return pstat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return pstat{state: f[0][0], ppid: ppid, start: start}, true
}

func (s pstat) dead() bool { return s.state == 'Z' || s.state == 'X' || s.state == 'x' }

// proc identifies one process: a pid is reused, a (pid, start) pair is not.
type proc struct {
	pid   int
	start uint64
	tag   string
}

// alive reports whether p still runs (and is not a zombie).
func (p proc) alive() bool {
	st, ok := readStat(p.pid)
	return ok && !st.dead() && (p.start == 0 || st.start == p.start)
}

func allPids() []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// scanTagged returns the live processes whose argv[0] starts with prefix.
func scanTagged(prefix string) map[int]proc {
	out := make(map[int]proc)
	pfx := []byte(prefix)
	for _, pid := range allPids() {
		a := argv0(pid)
		if !bytes.HasPrefix(a, pfx) {
			continue
		}
		st, ok := readStat(pid)
		if !ok || st.dead() {
			continue
		}
		out[pid] = proc{pid: pid, start: st.start, tag: string(a)}
	}
	return out
}

// findTag returns the one live process tagged exactly tag.
func findTag(tag string) (proc, int) {
	var found proc
	n := 0
	for pid, p := range scanTagged(tag) {
		if p.tag == tag {
			found = p
			found.pid = pid
			n++
		}
	}
	return found, n
}

// tree splits the processes under roots into the supervisor's own and the
// tagged children: the roots and their live descendants, minus every tagged
// process and whatever runs under it.
func tree(roots []int, prefix string) (sup, children []proc) {
	type entry struct {
		st  pstat
		tag bool
	}
	tab := make(map[int]entry)
	kids := make(map[int][]int)
	pfx := []byte(prefix)
	for _, pid := range allPids() {
		st, ok := readStat(pid)
		if !ok {
			continue
		}
		tab[pid] = entry{st: st, tag: bytes.HasPrefix(argv0(pid), pfx)}
		kids[st.ppid] = append(kids[st.ppid], pid)
	}
	seen := make(map[int]bool)
	stack := append([]int(nil), roots...)
	for len(stack) > 0 {
		pid := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		e, ok := tab[pid]
		if !ok || seen[pid] {
			continue
		}
		seen[pid] = true
		if e.tag {
			if !e.st.dead() {
				children = append(children, proc{pid: pid, start: e.st.start})
			}
			continue
		}
		if !e.st.dead() {
			sup = append(sup, proc{pid: pid, start: e.st.start})
		}
		stack = append(stack, kids[pid]...)
	}
	return sup, children
}

// memKB returns a process's RSS (VmRSS) and PSS (smaps_rollup) in KiB.
func memKB(pid int) (rss, pss int64) {
	field := func(path, key string) int64 {
		f, err := os.Open(path)
		if err != nil {
			return 0
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), key); ok {
				n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
				return n
			}
		}
		return 0
	}
	p := "/proc/" + strconv.Itoa(pid)
	return field(p+"/status", "VmRSS:"), field(p+"/smaps_rollup", "Pss:")
}

// cpuNS is the CPU time of every thread of a process, in ns, from each
// thread's schedstat (/proc/PID/schedstat covers the main thread only).
func cpuNS(pid int) int64 {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	var sum int64
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(data))
		if len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return sum
}

// machineBusy returns the busy and total jiffies of all CPUs.
func machineBusy() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		if i >= 8 {
			break
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// killProcs sends SIGKILL to every process of the list that is still the
// same process, and waits (bounded) until they are gone. It returns how many
// it had to kill.
func killProcs(ps []proc, wait time.Duration) int {
	n := 0
	for _, p := range ps {
		if p.alive() {
			if syscall.Kill(p.pid, syscall.SIGKILL) == nil {
				n++
			}
		}
	}
	waitGone(ps, wait)
	return n
}

// waitGone waits until none of ps is alive; it reports whether that happened in time.
func waitGone(ps []proc, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		left := false
		for _, p := range ps {
			if p.alive() {
				left = true
				break
			}
		}
		if !left {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
