package supervisor

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunChildLetsStartsAndReapingGoOn: while a child run by RunChild (the
// new binary's check of the state before a re-exec) is running, the daemon
// starts a worker and reaps its exit; the child's own exit and output come
// back to RunChild, not to the reaper.
func TestRunChildLetsStartsAndReapingGoOn(t *testing.T) {
	r, err := NewExecRunner(true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	cmd := exec.Command("/bin/sh", "-c", "echo waiting; read x; echo done >&2; exit 3")
	cmd.Stdin = pr
	type result struct {
		out []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		out, err := r.RunChild(context.Background(), cmd)
		res <- result{out, err}
	}()
	p, err := r.Start(Spec{Unit: "w", Argv: []string{"/bin/sh", "-c", "exit 7"}, Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatalf("start a worker while a child runs: %v", err)
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the worker's exit was not reaped while a child ran")
	}
	if c := p.Exit().Code; c != 7 {
		t.Errorf("worker exit code %d, want 7", c)
	}
	select {
	case got := <-res:
		t.Fatalf("RunChild returned before its child ended: %q %v", got.out, got.err)
	default:
	}
	pw.Close() // the child reads EOF and ends (pr is closed once RunChild returns: it may not have forked yet)
	var got result
	select {
	case got = <-res:
	case <-time.After(20 * time.Second):
		t.Fatal("RunChild did not return once its child ended")
	}
	pr.Close()
	if out := string(got.out); !strings.Contains(out, "waiting") || !strings.Contains(out, "done") {
		t.Errorf("output %q, want stdout and stderr", out)
	}
	if got.err == nil || !strings.Contains(got.err.Error(), "exit status 3") {
		t.Errorf("error %v, want exit status 3", got.err)
	}
}

// TestRunChildEndsWithContext: a child still running when the context ends
// is killed, and RunChild says so.
func TestRunChildEndsWithContext(t *testing.T) {
	r, err := NewExecRunner(true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.Command("/bin/sh", "-c", "echo started; exec sleep 600")
	done := make(chan error, 1)
	go func() {
		_, err := r.RunChild(ctx, cmd)
		done <- err
	}()
	// Cancel once it runs: its pid is known to the reaper.
	pid := 0
	for pid == 0 {
		r.mu.Lock()
		for p := range r.waited {
			pid = p
		}
		r.mu.Unlock()
		if pid != 0 {
			break
		}
		time.Sleep(time.Millisecond) // polling the runner's table until the child is registered
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RunChild: %v, want context.Canceled", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("RunChild did not return once its context ended")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the child %d is still there (kill -0: %v), want it killed and reaped", pid, err)
	}
}
