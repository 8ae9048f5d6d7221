package proctrack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// openRecordTest opens a tracker without cgroups whose runs are made up: the
// test finishes them itself, so Close signals nothing.
func openRecordTest(t *testing.T, logf func(string, ...any)) *Tracker {
	t.Helper()
	tr, err := Open(Options{StateDir: t.TempDir(), NoCgroup: true, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// liveRecord is what the tracker holds now, as the record lists it.
func liveRecord(tr *Tracker) []runRecord {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make([]runRecord, 0, len(tr.runs))
	for _, r := range tr.runs {
		out = append(out, r.record())
	}
	slices.SortFunc(out, func(a, b runRecord) int { return strings.Compare(a.Marker, b.Marker) })
	return out
}

func readRecordFile(t *testing.T, path string) (record, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec, torn, err := parseRecord(b)
	if err != nil || torn {
		t.Fatalf("record %q: torn %v, %v", b, torn, err)
	}
	return rec, b
}

// After any sequence of runs starting and ending, written in batches, the
// record read back is the set of runs the tracker holds, and the file never
// has more changes after its whole record than it has runs (or
// minCompact).
func TestRecordReplaysAsTracked(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			tr := openRecordTest(t, t.Logf)
			var live []*Run
			whole := 0
			for range 40 {
				for range rng.IntN(60) {
					if len(live) > 0 && rng.IntN(2) == 0 {
						i := rng.IntN(len(live))
						live[i].finish()
						live = slices.Delete(live, i, i+1)
						continue
					}
					r := tr.Begin("u" + strconv.Itoa(rng.IntN(5)))
					r.Started(os.Getpid())
					live = append(live, r)
				}
				tr.save()
				rec, b := readRecordFile(t, tr.path)
				if want := liveRecord(tr); !slices.Equal(rec.Runs, want) {
					t.Fatalf("replayed %d runs %+v, tracked %d %+v", len(rec.Runs), rec.Runs, len(want), want)
				}
				lines := bytes.Count(b, []byte{'\n'})
				if changes := lines - 1; changes > max(len(live), minCompact) {
					t.Fatalf("%d changes after the whole record of %d runs", changes, len(live))
				}
				if lines == 1 {
					whole++
				}
			}
			for _, r := range live {
				r.finish()
			}
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			if rec, b := readRecordFile(t, tr.path); len(rec.Runs) != 0 || bytes.Count(b, []byte{'\n'}) != 1 {
				t.Errorf("record after close = %q, want one line without runs", b)
			}
			if whole < 2 {
				t.Errorf("the record was written whole %d times in 40 writes, want it compacted", whole)
			}
		})
	}
}

// A change costs what changed: a run starting among many appends one line,
// not the whole record again.
func TestRecordAppendsAChange(t *testing.T) {
	tr := openRecordTest(t, t.Logf)
	var live []*Run
	for range 500 {
		r := tr.Begin("many")
		r.Started(os.Getpid())
		live = append(live, r)
	}
	tr.save()
	_, before := readRecordFile(t, tr.path)
	r := tr.Begin("one")
	r.Started(os.Getpid())
	live = append(live, r)
	tr.save()
	rec, after := readRecordFile(t, tr.path)
	if !bytes.HasPrefix(after, before) {
		t.Fatal("the whole record was written again for one change")
	}
	var c recordLine
	if err := json.Unmarshal(after[len(before):], &c); err != nil || c.Add == nil || c.Add.Marker != r.Marker() || c.Add.PID != os.Getpid() {
		t.Fatalf("appended %q (%v), want the run's start", after[len(before):], err)
	}
	if len(rec.Runs) != 501 {
		t.Errorf("replayed %d runs, want 501", len(rec.Runs))
	}
	for _, r := range live {
		r.finish()
	}
	tr.Close()
}

func TestParseRecord(t *testing.T) {
	whole := `{"cgroup":"/cg","runs":[{"unit":"a","marker":"k:a:1","pid":10,"start":5},{"unit":"b","marker":"k:b:2","pid":11,"start":6}]}`
	for _, tc := range []struct {
		name, in string
		markers  []string
		torn     bool
		bad      bool
	}{
		{"older record, no newline", whole, []string{"k:a:1", "k:b:2"}, false, false},
		{"changes", whole + "\n" + `{"end":"k:a:1"}` + "\n" + `{"add":{"unit":"c","marker":"k:c:3","pid":12,"start":7}}` + "\n", []string{"k:b:2", "k:c:3"}, false, false},
		{"torn last change", whole + "\n" + `{"end":"k:a:1"}` + "\n" + `{"add":{"unit":"c","mar`, []string{"k:b:2"}, true, false},
		{"last change without its newline", whole + "\n" + `{"end":"k:a:1"}`, []string{"k:b:2"}, false, false},
		{"unknown change", whole + "\n" + `{"rename":"x"}` + "\n", []string{"k:a:1", "k:b:2"}, false, false},
		{"bad change inside", whole + "\n" + `{"end":` + "\n" + `{"end":"k:a:1"}` + "\n", nil, false, true},
		{"bad whole record", `{"runs":[` + "\n" + `{"end":"k:a:1"}` + "\n", nil, false, true},
	} {
		rec, torn, err := parseRecord([]byte(tc.in))
		if (err != nil) != tc.bad || torn != tc.torn {
			t.Errorf("%s: torn %v, err %v; want torn %v, bad %v", tc.name, torn, err, tc.torn, tc.bad)
			continue
		}
		var got []string
		for _, r := range rec.Runs {
			got = append(got, r.Marker)
		}
		if !slices.Equal(got, tc.markers) {
			t.Errorf("%s: runs %v, want %v", tc.name, got, tc.markers)
		}
		if !tc.bad && rec.Cgroup != "/cg" {
			t.Errorf("%s: cgroup %q", tc.name, rec.Cgroup)
		}
	}
}

// startGroupLeader starts a sleep in its own process group and returns it
// with its start time.
func startGroupLeader(t *testing.T) (*exec.Cmd, uint64) {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	info, ok := readStat(cmd.Process.Pid)
	if !ok {
		t.Fatal("no stat for the sleep")
	}
	return cmd, info.start
}

type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logf(f string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(f, a...))
}

func (l *logLines) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// waitReaped waits for cmd to exit, up to a bound, and reports whether it
// was killed.
func waitReaped(t *testing.T, cmd *exec.Cmd) bool {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return true
	case <-time.After(10 * time.Second):
		return false
	}
}

// A daemon killed while appending a change leaves a torn last line: the
// record before it is used, and its processes are ended.
func TestSweepTornRecord(t *testing.T) {
	cmd, start := startGroupLeader(t)
	state := t.TempDir()
	path := filepath.Join(state, RecordName)
	pid := cmd.Process.Pid
	b := `{"runs":[]}` + "\n" +
		`{"add":{"unit":"old","marker":"x:old:1","pid":` + strconv.Itoa(pid) + `,"start":` + strconv.FormatUint(start, 10) + `}}` + "\n" +
		`{"add":{"unit":"torn","marker":"x:torn:2","pi`
	if err := os.WriteFile(path, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	var log logLines
	tr, err := Open(Options{StateDir: state, NoCgroup: true, Logf: log.logf})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	left := tr.Sweep()
	if len(left) != 1 || left[0].Unit != "old" || !slices.Contains(left[0].PIDs, pid) {
		t.Fatalf("leftovers = %+v, want unit old with pid %d", left, pid)
	}
	if !waitReaped(t, cmd) {
		t.Fatal("the recorded process still runs")
	}
	if lines := log.all(); len(lines) != 1 || !strings.Contains(lines[0], "last change is incomplete") {
		t.Errorf("logged %q, want one line about the incomplete change", lines)
	}
	if _, err := os.Stat(path + ".corrupt"); !os.IsNotExist(err) {
		t.Errorf("a torn record was kept aside: %v", err)
	}
}

// A record with a line that does not read in its middle is kept aside for a
// look, reported, and replaced; the sweep goes on without it.
func TestSweepKeepsCorruptRecordAside(t *testing.T) {
	cmd, start := startGroupLeader(t)
	state := t.TempDir()
	path := filepath.Join(state, RecordName)
	b := `{"runs":[{"unit":"old","marker":"x:old:1","pid":` + strconv.Itoa(cmd.Process.Pid) + `,"start":` + strconv.FormatUint(start, 10) + `}]}` + "\n" +
		"garbage\n" + `{"end":"x:old:1"}` + "\n"
	if err := os.WriteFile(path, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	var log logLines
	tr, err := Open(Options{StateDir: state, NoCgroup: true, Logf: log.logf})
	if err != nil {
		t.Fatal(err)
	}
	if left := tr.Sweep(); len(left) != 0 {
		t.Errorf("leftovers = %+v, want none from an unusable record", left)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	lines := log.all()
	if len(lines) != 1 || !strings.Contains(lines[0], "line 2") || !strings.Contains(lines[0], "kept as "+path+".corrupt") {
		t.Errorf("logged %q, want one line naming the bad line and where the record was kept", lines)
	}
	if kept, err := os.ReadFile(path + ".corrupt"); err != nil || string(kept) != b {
		t.Errorf("kept %q, %v; want the record as it was", kept, err)
	}
	if rec, _ := readRecordFile(t, path); len(rec.Runs) != 0 {
		t.Errorf("record after close has runs %+v", rec.Runs)
	}
	if !alive(cmd.Process.Pid) {
		t.Error("a process named only by the unusable record was ended")
	}
}

// A record larger than the bound is not read into memory.
func TestSweepRecordTooLarge(t *testing.T) {
	state := t.TempDir()
	path := filepath.Join(state, RecordName)
	big := `{"runs":[]}` + "\n" + strings.Repeat(`{"end":"x:a:1"}`+"\n", maxRecord/16+1)
	if err := os.WriteFile(path, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	var log logLines
	tr, err := Open(Options{StateDir: state, NoCgroup: true, Logf: log.logf})
	if err != nil {
		t.Fatal(err)
	}
	tr.Sweep()
	tr.Close()
	if lines := log.all(); len(lines) != 1 || !strings.Contains(lines[0], "larger than 16 MiB") {
		t.Errorf("logged %q, want one line about the size", lines)
	}
}

func alive(pid int) bool {
	_, ok := readStat(pid)
	return ok
}

// Once the changes after the whole record outnumber the runs, the record is
// written whole again, by rename: the file holds the live runs on one line.
func TestRecordCompacts(t *testing.T) {
	tr := openRecordTest(t, t.Logf)
	var live []*Run
	for range 10 {
		r := tr.Begin("kept")
		r.Started(os.Getpid())
		live = append(live, r)
	}
	tr.save()
	first, err := os.Stat(tr.path)
	if err != nil {
		t.Fatal(err)
	}
	compacted := false
	var churn *Run
	for i := 0; i < 4*minCompact && !compacted; i++ {
		if churn == nil {
			churn = tr.Begin("churn")
			churn.Started(os.Getpid())
		} else {
			churn.finish()
			churn = nil
		}
		tr.save()
		now, err := os.Stat(tr.path)
		if err != nil {
			t.Fatal(err)
		}
		compacted = !os.SameFile(first, now)
		// The flusher may have appended the first runs' starts too.
		if compacted && 10+i+1 <= minCompact {
			t.Errorf("written whole after %d changes, want more than %d", i+1, minCompact)
		}
	}
	if !compacted {
		t.Fatalf("not written whole after %d changes to 10 runs", 4*minCompact)
	}
	rec, b := readRecordFile(t, tr.path)
	if lines, want := bytes.Count(b, []byte{'\n'}), liveRecord(tr); lines != 1 || !slices.Equal(rec.Runs, want) {
		t.Errorf("compacted record has %d lines and runs %+v, want 1 line of %+v", lines, rec.Runs, want)
	}
	if churn != nil {
		churn.finish()
	}
	for _, r := range live {
		r.finish()
	}
	tr.Close()
}
