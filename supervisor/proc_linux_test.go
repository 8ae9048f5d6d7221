package supervisor

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type lineRecorder struct{ lines []string }

func (r *lineRecorder) Write(p []byte) (int, error) {
	r.lines = append(r.lines, string(p))
	return len(p), nil
}

func TestOutputLines(t *testing.T) {
	long := strings.Repeat("x", maxLine+10)
	input := "one\ntwo\n" + strings.Repeat("y", 5000) + "\n" + long + "\nlast without newline"
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		// Several writes, cut in the middle of lines.
		b := []byte(input)
		for len(b) > 0 {
			n := min(len(b), 3000)
			w.Write(b[:n])
			b = b[n:]
		}
		w.Close()
	}()
	rec := &lineRecorder{}
	op := &outPipe{fd: int(r.Fd()), w: rec}
	r.Fd() // blocking mode: drain reads until EOF
	buf := make([]byte, 4096)
	for op.drain(buf) {
	}
	op.flush()
	r.Close()
	cut := len(long) - (maxLine - 40)
	want := []string{"one\n", "two\n", strings.Repeat("y", 5000) + "\n", long[:maxLine-40] + fmt.Sprintf("…[%d bytes cut]", cut) + "\n", "last without newline"}
	got := rec.lines
	for i, l := range got {
		if len(l) > maxLine+1 {
			t.Errorf("line %d is %d bytes, more than the cap", i, len(l))
		}
	}
	if diff := cmp.Diff(want, got); diff != "" && len(got) != len(want) {
		t.Fatalf("lines: got %d, want %d", len(got), len(want))
	}
	if got[3] != want[3] {
		t.Errorf("long line: got %d bytes ending %q, want %d bytes ending %q", len(got[3]), got[3][len(got[3])-30:], len(want[3]), want[3][len(want[3])-30:])
	}
	if diff := cmp.Diff(want[:3], got[:3]); diff != "" {
		t.Errorf("first lines (-want +got):\n%s", diff)
	}
	if got[len(got)-1] != "last without newline" {
		t.Errorf("last line = %q", got[len(got)-1])
	}
}
