package sdnotify

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestIsDescendantRealTree(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sh := cmd.Process.Pid
	sleep := 0
	t.Cleanup(func() {
		// Kill the sleep first: the shell's wait reaps it and the shell then exits, so the whole group
		// is gone once the shell is waited for. Without the sleep's pid, kill the group.
		target := -sh
		if sleep > 0 {
			target = sleep
		}
		if err := syscall.Kill(target, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("kill %d: %v", target, err)
		}
		cmd.Wait()
		if err := syscall.Kill(-sh, 0); sleep > 0 && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still there after the test: %v", sh, err)
		}
	})
	if f, ok := out.(*os.File); ok {
		f.SetReadDeadline(time.Now().Add(waitLimit))
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read the sleep's pid: %v", err)
	}
	sleep, err = strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()

	for _, tt := range []struct {
		pid, ancestor int
		want          bool
	}{
		{sleep, sh, true},
		{sleep, self, true},
		{sh, self, true},
		{self, sleep, false},
		{self, sh, false},
		{sh, sleep, false},
		{sleep, sleep, false}, // a process is not its own descendant
		{0, sh, false},
		{sleep, 0, false},
		{-1, self, false},
	} {
		if got := IsDescendant(tt.pid, tt.ancestor); got != tt.want {
			t.Errorf("IsDescendant(%d, %d) = %v, want %v (sh=%d sleep=%d test=%d)",
				tt.pid, tt.ancestor, got, tt.want, sh, sleep, self)
		}
	}
}

func TestIsDescendantFakeProc(t *testing.T) {
	root := t.TempDir()
	stat := map[int]string{
		1:  "1 (init) S 0 1 1 0",
		5:  "5 (sh) S 1 5 5 0",
		10: "10 (evil) S 99) name) S 5 10 5 0", // a command name with spaces and parentheses
		20: "20 (loop) S 21 20 20 0",           // 20 and 21 name each other: the walk must end
		21: "21 (loop) S 20 21 21 0",
		30: "30 (orphan) S 404 30 30 0", // the parent has no stat file
		40: "40 (short)",
		41: "41 (bad) S notanumber",
	}
	for pid, line := range stat {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		pid, ancestor int
		want          bool
	}{
		{10, 5, true},
		{10, 1, true},
		{5, 1, true},
		{5, 10, false},
		{10, 99, false},
		{1, 5, false},
		{20, 7, false},
		{30, 5, false},
		{40, 1, false},
		{41, 1, false},
		{404, 1, false},
	} {
		if got := isDescendant(root, tt.pid, tt.ancestor); got != tt.want {
			t.Errorf("isDescendant(%d, %d) = %v, want %v", tt.pid, tt.ancestor, got, tt.want)
		}
	}
}

// TestAncestorsOfThisProcess: the chain of this test process reaches its parent; a gone pid has
// none.
func TestAncestorsOfThisProcess(t *testing.T) {
	got := Ancestors(os.Getpid())
	if len(got) == 0 || got[0] != os.Getppid() {
		t.Fatalf("Ancestors(self) = %v, want it to start with the parent %d", got, os.Getppid())
	}
	if a := ancestors(t.TempDir(), 12345); a != nil {
		t.Errorf("ancestors of a pid with no /proc entry = %v, want nil", a)
	}
}
