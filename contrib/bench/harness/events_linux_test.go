package main

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestWatcher starts a process that execs with a tag and checks that the
// watcher reports its exec and its exit, and that tree counts it as a
// child of this process — with the proc connector (as root) and by polling.
func TestWatcher(t *testing.T) {
	for _, poll := range []bool{false, true} {
		t.Run(fmt.Sprintf("poll=%v", poll), func(t *testing.T) {
			prefix := fmt.Sprintf("wt-%d-%v:", os.Getpid(), poll)
			w := newWatcher(prefix, poll)
			defer w.close()
			if !poll && os.Geteuid() == 0 && w.method != "proc connector" {
				t.Errorf("as root the watcher uses %q, want the proc connector", w.method)
			}
			sub := w.subscribe()
			defer w.unsubscribe(sub)
			cmd := exec.Command("bash", "-c", `exec -a "$0" sleep 30`, prefix+"x")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			want := func(exit bool) procEvent {
				t.Helper()
				deadline := monoNow() + int64(10*time.Second)
				for {
					e, err := next(sub, deadline)
					if err != nil {
						t.Fatalf("no %s event (exit=%v) within 10 s", prefix+"x", exit)
					}
					if e.pid == cmd.Process.Pid && e.exit == exit {
						return e
					}
				}
			}
			e := want(false)
			if e.tag != prefix+"x" {
				t.Errorf("exec event tag %q, want %q", e.tag, prefix+"x")
			}
			if p, n := findTag(prefix + "x"); n != 1 || p.pid != cmd.Process.Pid {
				t.Errorf("findTag = %+v, %d; want pid %d once", p, n, cmd.Process.Pid)
			}
			sup, children := tree([]int{os.Getpid()}, prefix)
			if len(children) != 1 || children[0].pid != cmd.Process.Pid {
				t.Errorf("tree children = %+v, want pid %d", children, cmd.Process.Pid)
			}
			if len(sup) == 0 || sup[0].pid != os.Getpid() {
				t.Errorf("tree supervisor processes = %+v, want this process first", sup)
			}
			cmd.Process.Kill()
			cmd.Wait()
			if e := want(true); e.tag != prefix+"x" || e.ts < 0 {
				t.Errorf("exit event %+v", e)
			}
		})
	}
}

func TestMemAndCPUOfThisProcess(t *testing.T) {
	rss, pss := memKB(os.Getpid())
	if rss <= 0 || pss <= 0 {
		t.Errorf("memKB = %d, %d; want both positive", rss, pss)
	}
	if cpuNS(os.Getpid()) <= 0 {
		t.Error("cpuNS of this process is 0")
	}
	if busy, total := machineBusy(); total <= 0 || busy > total {
		t.Errorf("machineBusy = %d of %d", busy, total)
	}
}
