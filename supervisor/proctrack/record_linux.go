package proctrack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

// The record (RecordName) is lines of JSON. The first is the whole record
// at one moment: {"cgroup":...,"runs":[...]}, the form a record had before
// it took changes. Each line after it is one change since, in order:
// {"add":{run}} when a run started, {"end":"MARKER"} when it ended. Changes
// are appended, a batch per write; once there are more of them than runs,
// the record is written whole again, by rename. A write costs what changed,
// and the file stays within about twice the whole record.

// maxRecord bounds the record file read back at start.
const maxRecord = 16 << 20

// minCompact is how many changes the record takes at least before it is
// written whole again: with few runs, not every write is a rename.
const minCompact = 128

type record struct {
	Cgroup string      `json:"cgroup,omitempty"`
	Runs   []runRecord `json:"runs"`
}

type runRecord struct {
	Unit   string `json:"unit"`
	Marker string `json:"marker"`
	PID    int    `json:"pid"`
	Start  uint64 `json:"start"`
	Cgroup string `json:"cgroup,omitempty"`
}

// recordLine is one change to the record: Add or End is set.
type recordLine struct {
	Add *runRecord `json:"add,omitempty"`
	End string     `json:"end,omitempty"`
}

func (r *Run) record() runRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return runRecord{Unit: r.unit, Marker: r.marker, PID: r.pid, Start: r.start, Cgroup: r.dir}
}

// recordFile is the record as written; the Tracker's saveMu guards it.
type recordFile struct {
	f       *os.File // open to append changes; nil = the next write is whole
	changes int      // lines after the whole record
	spare   []recordLine
	buf     []byte
}

// reset makes the next write a whole record.
func (w *recordFile) reset() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	w.changes = 0
}

// save writes what changed since the last write: the changes appended, or
// the whole record when none was written yet by this tracker, an append
// failed, or the changes outnumber the runs.
func (t *Tracker) save() {
	t.saveMu.Lock()
	defer t.saveMu.Unlock()
	w := &t.file
	t.mu.Lock()
	changes := t.changes
	t.changes = w.spare[:0]
	whole := w.f == nil || w.changes+len(changes) > max(len(t.runs), minCompact)
	var rec record
	if whole {
		rec = record{Cgroup: t.base, Runs: make([]runRecord, 0, len(t.runs))}
		for _, r := range t.runs {
			rec.Runs = append(rec.Runs, r.record())
		}
	}
	t.mu.Unlock()
	defer func() {
		// Kept for the next batch, unless a burst made it large.
		clear(changes)
		w.spare = nil
		if cap(changes) <= 4096 {
			w.spare = changes[:0]
		}
	}()
	if whole {
		slices.SortFunc(rec.Runs, func(a, b runRecord) int { return strings.Compare(a.Marker, b.Marker) })
		if err := w.writeWhole(t.path, rec); err != nil {
			t.opts.Logf("process record: %v (a restart after a crash may miss leftovers)", err)
		}
		return
	}
	if len(changes) == 0 {
		return
	}
	if err := w.appendChanges(changes); err != nil {
		t.opts.Logf("process record: %v (a restart after a crash may miss leftovers)", err)
	}
}

// writeWhole replaces the record by rename and keeps it open for the
// changes after it. It is not synced: the record matters after the daemon
// dies, not the machine (its processes die too).
func (w *recordFile) writeWhole(path string, rec record) error {
	w.reset()
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	w.f = f
	return nil
}

// appendChanges appends a batch of changes in one write. After a failed
// write, the next is whole: what a short write left is then replaced.
func (w *recordFile) appendChanges(changes []recordLine) error {
	w.buf = w.buf[:0]
	for _, c := range changes {
		b, err := json.Marshal(c)
		if err != nil {
			w.reset()
			return err
		}
		w.buf = append(append(w.buf, b...), '\n')
	}
	if _, err := w.f.Write(w.buf); err != nil {
		w.reset()
		return err
	}
	w.changes += len(changes)
	if cap(w.buf) > 1<<20 {
		w.buf = nil
	}
	return nil
}

// parseRecord replays a record: the whole record on its first line, then
// every change after it. A last line without its newline that does not read
// was cut short by the daemon's death: it is dropped and torn is true. Any
// other line that does not read makes the record unusable.
func parseRecord(b []byte) (rec record, torn bool, err error) {
	first, rest, _ := bytes.Cut(b, []byte{'\n'})
	if err := json.Unmarshal(first, &rec); err != nil {
		return record{}, false, fmt.Errorf("line 1: %w", err)
	}
	if len(rest) == 0 {
		return rec, false, nil
	}
	runs := make(map[string]runRecord, len(rec.Runs))
	for _, r := range rec.Runs {
		runs[r.Marker] = r
	}
	for n := 2; len(rest) > 0; n++ {
		line, after, complete := bytes.Cut(rest, []byte{'\n'})
		rest = after
		var c recordLine
		if err := json.Unmarshal(line, &c); err != nil {
			if !complete {
				torn = true
				break
			}
			return record{}, false, fmt.Errorf("line %d: %w", n, err)
		}
		switch {
		case c.Add != nil:
			runs[c.Add.Marker] = *c.Add
		case c.End != "":
			delete(runs, c.End)
		}
	}
	rec.Runs = rec.Runs[:0]
	for _, r := range runs {
		rec.Runs = append(rec.Runs, r)
	}
	slices.SortFunc(rec.Runs, func(a, b runRecord) int { return strings.Compare(a.Marker, b.Marker) })
	return rec, torn, nil
}

// readRecord reads the record a previous daemon left. One that cannot be
// used is moved aside (RecordName + ".corrupt") for a look, and reported;
// leftovers are then found by cgroup and environment only.
func (t *Tracker) readRecord() record {
	b, err := readBounded(t.path, maxRecord+1)
	if err != nil || len(b) == 0 {
		return record{}
	}
	if len(b) > maxRecord {
		err = fmt.Errorf("larger than %d MiB", maxRecord>>20)
	} else {
		rec, torn, perr := parseRecord(b)
		if perr == nil {
			if torn {
				t.opts.Logf("process record %s: its last change is incomplete (the daemon was stopped while writing it); using the record before it", t.path)
			}
			return rec
		}
		err = perr
	}
	aside := t.path + ".corrupt"
	if rerr := os.Rename(t.path, aside); rerr != nil {
		t.opts.Logf("process record %s: %v (could not keep it as %s: %v; looking for leftovers by cgroup and environment only)", t.path, err, aside, rerr)
		return record{}
	}
	t.opts.Logf("process record %s: %v (kept as %s; looking for leftovers by cgroup and environment only)", t.path, err, aside)
	return record{}
}
