package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestStoreNameRoundTrip(t *testing.T) {
	for _, u := range []string{"web", "tick@a", "ns:job.1", "a:b:c@x"} {
		name := StoreName(u, "stdout")
		if err := checkStoreName(name); err != nil {
			t.Errorf("StoreName(%q) = %q: %v", u, name, err)
		}
		gu, gk, ok := SplitStoreName(name)
		if !ok || gu != u || gk != "stdout" {
			t.Errorf("SplitStoreName(%q) = %q, %q, %v; want %q, stdout", name, gu, gk, ok, u)
		}
	}
	for _, bad := range []string{"", "control", "/x", "x/"} {
		if _, _, ok := SplitStoreName(bad); ok {
			t.Errorf("SplitStoreName(%q) is ok", bad)
		}
	}
	if _, err := Store("web:stdout"); err == nil {
		t.Error("Store accepted a name with ':'")
	}
}

// The manager receives FDSTORE=1 with the name and a working copy of the
// file, and FDSTOREREMOVE=1 with the name.
func TestStoreSendsFiles(t *testing.T) {
	path := filepath.Join(shortDir(t), "manager")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	recv := func() (string, []int) {
		t.Helper()
		l.SetReadDeadline(time.Now().Add(waitLimit))
		buf, oob := make([]byte, MaxMessageSize), make([]byte, unix.CmsgSpace(4*4))
		n, oobn, _, _, err := l.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		var fds []int
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cmsgs {
			got, err := unix.ParseUnixRights(&c)
			if err != nil {
				t.Fatal(err)
			}
			fds = append(fds, got...)
		}
		return string(buf[:n]), fds
	}
	if sent, err := Store(StoreName("ns:web", "stdout"), r); err != nil || !sent {
		t.Fatalf("Store = %v, %v", sent, err)
	}
	msg, fds := recv()
	if msg != "FDSTORE=1\nFDNAME=ns%web/stdout" || len(fds) != 1 {
		t.Fatalf("manager got %q with %d fds", msg, len(fds))
	}
	stored := os.NewFile(uintptr(fds[0]), "stored")
	defer stored.Close()
	if _, err := w.Write([]byte("line\n")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	n, err := stored.Read(b)
	if err != nil || string(b[:n]) != "line\n" {
		t.Fatalf("read through the stored file: %q, %v", b[:n], err)
	}
	if sent, err := Unstore(StoreName("ns:web", "stdout")); err != nil || !sent {
		t.Fatalf("Unstore = %v, %v", sent, err)
	}
	if msg, fds := recv(); msg != "FDSTOREREMOVE=1\nFDNAME=ns%web/stdout" || len(fds) != 0 {
		t.Fatalf("manager got %q with %d fds", msg, len(fds))
	}
	os.Unsetenv("NOTIFY_SOCKET")
	if sent, err := Store("x/stdout", r); sent || err != nil {
		t.Errorf("Store without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}
}
