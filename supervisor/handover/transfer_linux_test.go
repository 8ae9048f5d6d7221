package handover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketPair returns the two ends of a connected unix stream socket.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "pair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// TestSendReceive passes more files than one message can carry: each
// arrives under its name (the pipe it reads is the one written for that
// name), close-on-exec, with the record.
func TestSendReceive(t *testing.T) {
	a, b := socketPair(t)
	const n = 2*batchFiles + 37
	fs := make(Files)
	writers := make(map[string]*os.File)
	for i := range n {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		name := FDName(fmt.Sprintf("u%03d", i), KindStdout)
		fs[name], writers[name] = r, w
	}
	defer fs.Close()
	defer func() {
		for _, w := range writers {
			w.Close()
		}
	}()
	rec := &Record{PID: 42, Seq: 7, Units: []Unit{{Name: "u000", Want: true}}, FDs: map[string]int{"x": 9}}
	errc := make(chan error, 1)
	go func() { errc <- Send(a, rec, fs) }()
	b.SetDeadline(time.Now().Add(30 * time.Second))
	got, files, err := Receive(b)
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if rec.FDs["x"] != 9 {
		t.Errorf("Send changed the record's FDs: %v", rec.FDs)
	}
	if got.PID != 42 || got.Seq != 7 || len(got.Units) != 1 || got.Units[0].Name != "u000" || got.FDs != nil {
		t.Errorf("record received: %+v", got)
	}
	if len(files) != n {
		t.Fatalf("%d files received, want %d", len(files), n)
	}
	for name, w := range writers {
		if _, err := w.WriteString(name); err != nil {
			t.Fatal(err)
		}
		f := files[name]
		if f == nil {
			t.Fatalf("no file %s", name)
		}
		flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("%s: not close-on-exec (%v)", name, err)
		}
		buf := make([]byte, len(name))
		if _, err := io.ReadFull(f, buf); err != nil || string(buf) != name {
			t.Fatalf("%s reads %q (%v): files and names mixed up", name, buf, err)
		}
	}

	// The answer, both ways.
	go func() { errc <- Answer(b, nil) }()
	if err := ReadAnswer(a); err != nil {
		t.Errorf("answer yes: %v", err)
	}
	<-errc
	go func() { errc <- Answer(b, errors.New("not today")) }()
	if err := ReadAnswer(a); err == nil || !strings.Contains(err.Error(), "not today") {
		t.Errorf("answer no: %v", err)
	}
	<-errc
}

// TestReceiveRefuses: a record of another version, a frame over its bound,
// files no batch names, an unknown frame, a cut stream: each is an error,
// and no file received is left open.
func TestReceiveRefuses(t *testing.T) {
	frame := func(kind byte, payload []byte) []byte {
		b := make([]byte, 5, 5+len(payload))
		b[0] = kind
		binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
		return append(b, payload...)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, c := range []struct {
		name string
		data []byte
		oob  []byte
		want string
	}{
		{"version", frame(frameRecord, []byte(`{"version":99}`)), nil, "version 99"},
		{"too big", []byte{frameRecord, 0xff, 0xff, 0xff, 0xff}, nil, "over"},
		{"unnamed files", frame(frameRecord, []byte(`{"version":1}`)), unix.UnixRights(int(r.Fd())), "no batch named"},
		{"names without files", frame(frameFiles, []byte(`["a:stdout","b:stdout"]`)), unix.UnixRights(int(r.Fd())), "2 files named, 1 received"},
		{"unknown", frame('Z', nil), nil, "unknown frame"},
		{"cut", frame(frameRecord, []byte(`{"version":1}`))[:8], nil, "EOF"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := socketPair(t)
			if _, _, err := a.WriteMsgUnix(c.data, c.oob, nil); err != nil {
				t.Fatal(err)
			}
			a.CloseWrite()
			b.SetDeadline(time.Now().Add(10 * time.Second))
			before := openFDs(t)
			_, _, err := Receive(b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Receive: %v, want an error with %q", err, c.want)
			}
			if after := openFDs(t); after != before {
				t.Errorf("%d descriptors open before Receive, %d after: a file received was left open", before, after)
			}
		})
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
