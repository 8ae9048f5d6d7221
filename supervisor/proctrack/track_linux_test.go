package proctrack

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/sys/fs/cgroup`:         "/sys/fs/cgroup",
		`/mnt/with\040space`:     "/mnt/with space",
		`/tab\011and\134slash`:   "/tab\tand\\slash",
		`/trailing\04`:           `/trailing\04`,
		`/not\999octal\040after`: `/not\999octal after`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadStat(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	info, ok := readStat(cmd.Process.Pid)
	if !ok || info.pgid != cmd.Process.Pid || info.start == 0 {
		t.Errorf("readStat(sleep) = %+v, %v; want its own group and a start time", info, ok)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, ok := readStat(cmd.Process.Pid); ok {
		t.Error("readStat of a reaped process says it runs")
	}
}

// A record that is not JSON is reported and the sweep goes on by cgroup and
// environment, then writes a valid record.
func TestSweepCorruptRecord(t *testing.T) {
	state := t.TempDir()
	path := filepath.Join(state, RecordName)
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logged []string
	tr, err := Open(Options{StateDir: state, NoCgroup: true, Logf: func(f string, a ...any) { logged = append(logged, f) }})
	if err != nil {
		t.Fatal(err)
	}
	if left := tr.Sweep(); len(left) != 0 {
		t.Errorf("leftovers = %+v, want none", left)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "process record") {
		t.Errorf("logged %q, want one line about the process record", logged)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(b), `{"runs":[]}`) {
		t.Errorf("record after close = %q, %v", b, err)
	}
}

// markerReference is how a process's marker was read before procReader:
// the whole environment, split.
func markerReference(pid int) string {
	b, err := readBounded("/proc/"+strconv.Itoa(pid)+"/environ", maxEnviron)
	if err != nil {
		return ""
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(MarkerVar+"=")); ok {
			return string(v)
		}
	}
	return ""
}

func TestProcReaderMarker(t *testing.T) {
	big := "BIG=" + strings.Repeat("x", 100<<10)
	var huge []string // more than maxEnviron, in strings the kernel takes
	for i := range maxEnviron/(64<<10) + 1 {
		huge = append(huge, "H"+strconv.Itoa(i)+"="+strings.Repeat("y", 64<<10))
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{MarkerVar + "=k:first:1", "A=1"}, "k:first:1"},
		{[]string{"A=1", MarkerVar + "=k:mid:2", "B=2"}, "k:mid:2"},
		{[]string{"A=1", MarkerVar + "=k:one:3", MarkerVar + "=k:two:4"}, "k:one:3"},
		{[]string{"X" + MarkerVar + "=no", "A=" + MarkerVar + "=no"}, ""},
		{[]string{"A=1", big, MarkerVar + "=k:after-big:5"}, "k:after-big:5"},
		{append(append([]string{"A=1"}, huge...), MarkerVar+"=k:beyond:6"), ""},
		{[]string{MarkerVar + "="}, ""},
		{[]string{}, ""},
	} {
		pid := startReady(t, tc.env...)
		var pr procReader
		got := string(pr.marker(pid))
		ref := markerReference(pid)
		if got != tc.want || got != ref {
			t.Errorf("marker with env %.60q = %q, want %q (read whole: %q)", tc.env, got, tc.want, ref)
		}
		if !slices.Contains(pr.list(), pid) {
			t.Errorf("pid %d not listed", pid)
		}
	}
	var pr procReader
	if slices.Contains(pr.list(), os.Getpid()) {
		t.Error("the list holds this process")
	}
	if pr.marker(os.Getpid()) != nil && markerReference(os.Getpid()) == "" {
		t.Error("a marker read where there is none")
	}
}

// Every process on the machine reads as it did when the whole environment
// was read.
func TestProcReaderAsBefore(t *testing.T) {
	var pr procReader
	pids := slices.Clone(pr.list())
	if len(pids) < 2 {
		t.Fatalf("listed %v", pids)
	}
	for _, pid := range pids {
		ref := markerReference(pid)
		got := string(pr.marker(pid))
		if again := markerReference(pid); again != ref {
			continue // it exec'd or ended meanwhile
		}
		if got != ref {
			t.Errorf("pid %d: marker %q, read whole %q", pid, got, ref)
		}
	}
}

// startReady starts a shell with exactly env (repeats too) in its own
// process group and waits until it runs: its environment can be read only
// once exec is complete, which is after the fork returns. It waits on its
// stdin until the test ends.
func startReady(t *testing.T, env ...string) int {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "echo ready; read x"}, &os.ProcAttr{
		Env: env, Files: []*os.File{inR, outW, os.Stderr}, Sys: &syscall.SysProcAttr{Setpgid: true},
	})
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		inW.Close()
		p.Kill()
		p.Wait()
	})
	line, err := bufio.NewReader(outR).ReadString('\n')
	outR.Close()
	if line != "ready\n" {
		t.Fatalf("shell said %q, %v", line, err)
	}
	return p.Pid
}

// A pass over /proc does not read the main process of a run that runs and
// is not looked for (here it carries another run's marker, so reading it
// would find it), yet finds a process that escaped the run looked for; once
// the main process is reaped its pid is read again.
func TestScanSkipsKnownWorker(t *testing.T) {
	tr, err := Open(Options{StateDir: t.TempDir(), NoCgroup: true})
	if err != nil {
		t.Fatal(err)
	}
	wanted := tr.Begin("wanted")
	mainPID := startReady(t, wanted.Env())
	wanted.Started(mainPID)
	escaped := startReady(t, "A=1", wanted.Env())
	other := tr.Begin("other")
	otherPID := startReady(t, wanted.Env())
	other.Started(otherPID)
	defer func() {
		wanted.finish()
		other.finish()
		tr.Close()
	}()

	var pr procReader
	want := map[string]bool{wanted.Marker(): true}
	pids := func() []int {
		var out []int
		for _, p := range tr.scanMarker(&pr, want) {
			if p.marker != wanted.Marker() {
				t.Errorf("found %+v, want only the marker %s", p, wanted.Marker())
			}
			out = append(out, p.pid)
		}
		slices.Sort(out)
		return out
	}
	if got, want := pids(), []int{mainPID, escaped}; !slices.Equal(got, sorted(want)) {
		t.Errorf("found %v, want the wanted run's main %d and its escaped process %d (not the other run's main %d)", got, mainPID, escaped, otherPID)
	}
	other.Exited()
	if got, want := pids(), []int{mainPID, escaped, otherPID}; !slices.Equal(got, sorted(want)) {
		t.Errorf("after the other run's main was reaped, found %v, want %v", got, sorted(want))
	}
}

func sorted(s []int) []int {
	slices.Sort(s)
	return s
}

// statReference is how /proc/PID/stat was read before statOf: the fields
// split by strings.Fields.
func statReference(pid int) (state string, ppid, pgid int, start uint64, ok bool) {
	b, err := readBounded("/proc/"+strconv.Itoa(pid)+"/stat", 4096)
	if err != nil {
		return "", 0, 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", 0, 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", 0, 0, 0, false
	}
	pp, err1 := strconv.Atoi(f[1])
	pg, err2 := strconv.Atoi(f[2])
	st, err3 := strconv.ParseUint(f[19], 10, 64)
	return f[0], pp, pg, st, err1 == nil && err2 == nil && err3 == nil
}

// Every process on the machine reads as it did with the whole line split.
func TestStatAsBefore(t *testing.T) {
	var pr procReader
	pids := slices.Clone(pr.list())
	pids = append(pids, os.Getpid())
	checked := 0
	for _, pid := range pids {
		_, pp, pg, start, ok := statReference(pid)
		st, sok := statOf(pid)
		_, pp2, pg2, start2, ok2 := statReference(pid)
		if pp != pp2 || pg != pg2 || start != start2 || ok != ok2 {
			continue // it changed or ended meanwhile
		}
		checked++
		if sok != ok || (ok && (st.ppid != pp || st.pgid != pg || st.start != start)) {
			t.Errorf("pid %d: statOf %+v %v, split %d %d %d %v", pid, st, sok, pp, pg, start, ok)
		}
	}
	if checked < 2 {
		t.Errorf("checked %d processes", checked)
	}
	for _, tc := range []struct {
		in   string
		want stat
		ok   bool
	}{
		{"1 (init) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 42 1000 10\n", stat{'S', 0, 1, 42}, true},
		{"7 (a) b) (c) R 1 -1 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0", stat{'R', 1, -1, 99}, true},
		{"9 (sp ace) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", stat{'Z', 1, 9, 7}, true},
		{"9 (short) S 1 9 9 0", stat{}, false},
		{"9 (x) S 1 nine 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", stat{}, false},
		{"no parens S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", stat{}, false},
	} {
		if got, ok := parseStat([]byte(tc.in)); got != tc.want || ok != tc.ok {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestStatOfAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	pid := os.Getpid()
	if n := testing.AllocsPerRun(100, func() { statOf(pid) }); n != 0 {
		t.Errorf("statOf allocates %v times", n)
	}
	var pr procReader
	pr.marker(pid)
	if n := testing.AllocsPerRun(100, func() { pr.marker(pid) }); n != 0 {
		t.Errorf("marker allocates %v times", n)
	}
}

// A handed-over run whose main process is this process's child (as after a
// re-exec) is known by its pid once adopted, whether /proc confirmed it
// or the caller vouched for it (Adopted's child); one whose main
// process is not (its daemon died; another process reaps it) is still read.
func TestScanKnowsAdoptedChild(t *testing.T) {
	t.Run("read", func(t *testing.T) { testScanKnowsAdoptedChild(t, false) })
	t.Run("known", func(t *testing.T) { testScanKnowsAdoptedChild(t, true) })
}

func testScanKnowsAdoptedChild(t *testing.T, childKnown bool) {
	state := t.TempDir()
	first, err := Open(Options{StateDir: state, NoCgroup: true})
	if err != nil {
		t.Fatal(err)
	}
	wanted := first.Begin("wanted").Marker()
	childMarker, orphanMarker := first.Begin("child").Marker(), first.Begin("orphan").Marker()
	first.Close()

	child := startReady(t, MarkerVar+"="+wanted)
	orphan := startOrphan(t, MarkerVar+"="+wanted)
	keep := func(unit, marker string, pid int) Keep {
		st, ok := statOf(pid)
		if !ok {
			t.Fatalf("no stat for %d", pid)
		}
		return Keep{Unit: unit, Marker: marker, PID: pid, Start: st.start}
	}
	tr, err := Open(Options{StateDir: state, NoCgroup: true, Keep: []Keep{
		keep("child", childMarker, child), keep("orphan", orphanMarker, orphan),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Adopted(childMarker, childKnown) == nil || tr.Adopted(orphanMarker, false) == nil {
		t.Fatal("kept runs not adopted")
	}
	var pr procReader
	var got []int
	for _, p := range tr.scanMarker(&pr, map[string]bool{wanted: true}) {
		got = append(got, p.pid)
	}
	if !slices.Equal(got, []int{orphan}) {
		t.Errorf("found %v, want only the orphan %d (the adopted child %d is known)", got, orphan, child)
	}
}

// startOrphan starts a shell with env whose parent exits at once, so that
// it is not this process's child, and waits until it runs.
func startOrphan(t *testing.T, env ...string) int {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// A job in the background reads /dev/null as its stdin: it waits on fd 3.
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", `/bin/sh -c 'echo ready; read x <&3' & echo "$!"`}, &os.ProcAttr{
		Env: env, Files: []*os.File{inR, outW, os.Stderr, inR}, Sys: &syscall.SysProcAttr{Setpgid: true},
	})
	inR.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	p.Wait()
	rd := bufio.NewReader(outR)
	pid := 0
	for range 2 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("shell said %q, %v", line, err)
		}
		if n, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			pid = n
		}
	}
	outR.Close()
	if pid == 0 {
		t.Fatal("no pid from the shell")
	}
	t.Cleanup(func() {
		inW.Close()
		syscall.Kill(pid, syscall.SIGKILL)
	})
	return pid
}
