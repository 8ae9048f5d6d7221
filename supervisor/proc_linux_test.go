package supervisor

import (
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
	want := []string{"one\n", "two\n", strings.Repeat("y", 5000) + "\n", long[:maxLine], long[maxLine:] + "\n", "last without newline"}
	got := rec.lines
	// Long lines may be split at any point at or past maxLine: compare the joined text and the cuts.
	if strings.Join(got, "") != input {
		t.Fatalf("copied text differs from the input")
	}
	for i, l := range got {
		if len(l) > maxLine+3000 {
			t.Errorf("line %d is %d bytes, more than the cap", i, len(l))
		}
	}
	if diff := cmp.Diff(want[:3], got[:3]); diff != "" {
		t.Errorf("first lines (-want +got):\n%s", diff)
	}
	if got[len(got)-1] != "last without newline" {
		t.Errorf("last line = %q", got[len(got)-1])
	}
}
