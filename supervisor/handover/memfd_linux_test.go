package handover

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMemfdAndInherit writes a record into a memory file, marks files to be
// kept across exec, and reads it back as a re-exec'd process would.
func TestMemfdAndInherit(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rec := sample()
	files := Files{FDName("web", KindStdout): r}
	if err := Inherit(rec, files); err != nil {
		t.Fatal(err)
	}
	if flags, _ := unix.FcntlInt(r.Fd(), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC != 0 {
		t.Error("an inherited file is still close-on-exec")
	}
	mf, err := WriteMemfd(rec)
	if err != nil {
		t.Fatal(err)
	}
	env, err := ExecEnv(nil, mf)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvFD, env[0][len(EnvFD)+1:])
	got, fs, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := os.LookupEnv(EnvFD); ok {
		t.Errorf("%s still set after FromEnv", EnvFD)
	}
	if got.PID != rec.PID || len(got.Units) != 1 {
		t.Errorf("record read back: %+v", got)
	}
	f := fs.Take(FDName("web", KindStdout))
	if f == nil || int(f.Fd()) != int(r.Fd()) {
		t.Fatalf("files read back: %v", fs)
	}
	if flags, _ := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); flags&unix.FD_CLOEXEC == 0 {
		t.Error("a file read back is not close-on-exec again")
	}
	w.Write([]byte("x"))
	b := make([]byte, 1)
	if n, _ := f.Read(b); n != 1 || b[0] != 'x' {
		t.Errorf("the file read back is not the pipe")
	}
	// f and r wrap the same descriptor: close both now (the second close
	// finds it closed), so that no finalizer closes it later.
	f.Close()
	r.Close()
}
