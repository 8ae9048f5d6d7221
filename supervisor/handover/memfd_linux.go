package handover

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// WriteMemfd writes the record, in binary form, into an anonymous memory
// file, read from its start. It is close-on-exec until Inherit.
func WriteMemfd(r *Record) (*os.File, error) {
	b, err := EncodeBinary(r)
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("opsvc-handover", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("handover: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "opsvc-handover")
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("handover: write the state record: %w", err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("handover: write the state record: %w", err)
	}
	return f, nil
}

// Inherit clears close-on-exec on each file, so that an exec keeps them, and
// records their numbers in r.FDs. Call it right before the exec, then
// WriteMemfd.
func Inherit(r *Record, fs Files) error {
	r.FDs = make(map[string]int, len(fs))
	for name, f := range fs {
		fd := int(f.Fd())
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("handover: keep %s (fd %d) across exec: %w", name, fd, err)
		}
		r.FDs[name] = fd
	}
	return nil
}

// ExecEnv returns env with EnvFD set to the record's memory file, which is
// kept across exec.
func ExecEnv(env []string, memfd *os.File) ([]string, error) {
	if _, err := unix.FcntlInt(memfd.Fd(), unix.F_SETFD, 0); err != nil {
		return nil, fmt.Errorf("handover: keep the state record across exec: %w", err)
	}
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if len(kv) > len(EnvFD) && kv[:len(EnvFD)+1] == EnvFD+"=" {
			continue
		}
		out = append(out, kv)
	}
	return append(out, EnvFD+"="+strconv.Itoa(int(memfd.Fd()))), nil
}

// FromEnv takes a handover passed by re-exec: with EnvFD unset it returns
// nil, nil, nil. It unsets EnvFD, reads and closes the memory file, and
// returns the record with its files, every one close-on-exec again (so no
// worker inherits them). On a bad record, every inherited descriptor is made
// close-on-exec, and left open.
func FromEnv() (*Record, Files, error) {
	v, ok := os.LookupEnv(EnvFD)
	if !ok {
		return nil, nil, nil
	}
	os.Unsetenv(EnvFD)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		closeOnExecAll()
		return nil, nil, fmt.Errorf("handover: %s=%q is not a descriptor number", EnvFD, v)
	}
	// Every descriptor close-on-exec again, at once (Linux 5.11 and later):
	// nothing this process opened so far is for a child.
	bulk := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC) == nil
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "opsvc-handover")
	defer f.Close()
	r, err := Read(f)
	if err != nil {
		closeOnExecAll()
		return nil, nil, err
	}
	fs := make(Files, len(r.FDs))
	for name, n := range r.FDs {
		if n < 3 {
			continue
		}
		// One by one without the bulk call; an error says the descriptor
		// is not there.
		if !bulk {
			if _, err := unix.FcntlInt(uintptr(n), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
				continue // the worker it belongs to is not re-adopted
			}
		}
		fs[name] = os.NewFile(uintptr(n), name)
	}
	return r, fs, nil
}

// closeOnExecAll marks every descriptor above stderr close-on-exec.
func closeOnExecAll() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > 2 {
			unix.CloseOnExec(n)
		}
	}
}
