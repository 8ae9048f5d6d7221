package proctrack

import (
	"os"
	"os/exec"
	"path/filepath"
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
