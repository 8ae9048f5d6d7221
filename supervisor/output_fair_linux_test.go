package supervisor

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/logs"
	"golang.org/x/sys/unix"
)

// logsWriter passes each line the poller hands it to a real line store, as
// the daemon does.
type logsWriter struct {
	l     *logs.Logs
	unit  string
	lines atomic.Int64
	ch    chan string
	work  int // extra work per line: a daemon busy with other things
}

func (w *logsWriter) Write(p []byte) (int, error) {
	text := strings.TrimRight(string(p), "\n")
	sum := sha256.Sum256(p)
	for range w.work {
		sum = sha256.Sum256(sum[:])
	}
	w.l.Write(logs.Line{Unit: w.unit, Stream: logs.StreamStdout, Text: text})
	w.lines.Add(1)
	if w.ch != nil {
		w.ch <- text
	}
	return len(p), nil
}

// startOn starts a real process with its stdout on a poller pipe.
func startOn(t *testing.T, fd int, name string, args ...string) *exec.Cmd {
	t.Helper()
	f := os.NewFile(uintptr(fd), "out")
	cmd := exec.Command(name, args...)
	cmd.Stdout = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// TestOutputFairAcrossUnits: a unit printing without pause (yes) must not
// starve another unit's lines. The ticker's lines must all arrive, in order,
// while the flooder is still running and still being read.
func TestOutputFairAcrossUnits(t *testing.T) {
	o, err := newOutputPoller()
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	l, err := logs.New(logs.Options{Dir: t.TempDir(), JournalSocket: logs.NoJournal})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	flood := &logsWriter{l: l, unit: "flood", work: 20}
	_, fw, err := o.pipe(flood)
	if err != nil {
		t.Fatal(err)
	}
	// A unit can grow its own pipe (F_SETPIPE_SZ): then it keeps the pipe from
	// ever running empty while the daemon reads.
	if _, err := unix.FcntlInt(uintptr(fw), unix.F_SETPIPE_SZ, 1<<20); err != nil {
		t.Logf("grow the flooder's pipe: %v", err)
	}
	flooder := startOn(t, fw, "yes", strings.Repeat("y", 100))
	deadline := time.Now().Add(time.Minute)
	for flood.lines.Load() < 10000 {
		if time.Now().After(deadline) {
			t.Fatal("the flooder's lines are not read")
		}
		time.Sleep(time.Millisecond)
	}

	const n = 20
	tick := &logsWriter{l: l, unit: "tick", ch: make(chan string, n)}
	_, tw, err := o.pipe(tick)
	if err != nil {
		t.Fatal(err)
	}
	startOn(t, tw, "sh", "-c", fmt.Sprintf("for i in $(seq 1 %d); do echo tick $i; sleep 0.02; done", n))
	var atFirst int64
	for i := 1; i <= n; i++ {
		select {
		case got := <-tick.ch:
			if want := fmt.Sprintf("tick %d", i); got != want {
				t.Fatalf("ticker line %q, want %q", got, want)
			}
			if i == 1 {
				atFirst = flood.lines.Load()
			}
		case <-time.After(time.Until(deadline)):
			t.Fatalf("only %d of the ticker's %d lines arrived while another unit floods", i-1, n)
		}
	}
	if flooder.ProcessState != nil {
		t.Fatal("the flooder stopped before the ticker's lines were all read")
	}
	if got := flood.lines.Load(); got == atFirst {
		t.Fatal("the flooder was not read while the ticker's lines arrived")
	}
	t.Logf("flood lines read: %d", flood.lines.Load())
	if got := len(l.Tail("tick", 0)); got != n {
		t.Fatalf("the ticker's ring holds %d lines, want %d", got, n)
	}
}
