package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitLimit bounds every wait in these tests; it is generous because the machine may be busy.
const waitLimit = 10 * time.Second

// shortDir returns a fresh directory with a short path: t.TempDir can exceed sun_path's 108 bytes.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// listenTest starts a server at a fresh path whose handler forwards every message to the returned
// channel. The server is closed when the test ends.
func listenTest(t *testing.T) (*Server, <-chan Message) {
	t.Helper()
	ch := make(chan Message, 64)
	return listenWith(t, filepath.Join(shortDir(t), "notify"), func(m Message) { ch <- m }), ch
}

func listenWith(t *testing.T, path string, h func(Message)) *Server {
	t.Helper()
	s, err := Listen(path, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func recvMsg(t *testing.T, ch <-chan Message) Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(waitLimit):
		t.Fatalf("no message within %v", waitLimit)
		return Message{}
	}
}

// send sends one datagram to addr, with optional control data (for example unix.UnixRights).
func send(t *testing.T, addr string, payload []byte, oob []byte) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Sendmsg(fd, payload, oob, &unix.SockaddrUnix{Name: addr}, 0); err != nil {
		t.Fatalf("send %d bytes to %s: %v", len(payload), addr, err)
	}
}

// expectStatus receives the next message and checks that it is the sentinel STATUS=want, proving
// that nothing else was handled before it.
func expectStatus(t *testing.T, ch <-chan Message, want string) Message {
	t.Helper()
	m := recvMsg(t, ch)
	if m.Status == nil || *m.Status != want {
		t.Fatalf("next message has fields %q, want the sentinel STATUS=%s", m.Fields, want)
	}
	return m
}

func TestServerCredentialsFieldsAndOrder(t *testing.T) {
	s, ch := listenTest(t)
	if !filepath.IsAbs(s.Addr()) {
		t.Fatalf("Addr() = %q, want an absolute path", s.Addr())
	}
	payloads := []string{"READY=1\nSTATUS=one", "STATUS=two", "X_CUSTOM=yes\nMAINPID=12345", "WATCHDOG=1"}
	for _, p := range payloads {
		send(t, s.Addr(), []byte(p), nil)
	}
	for i, p := range payloads {
		m := recvMsg(t, ch)
		want, _ := Parse([]byte(p))
		if len(m.Fields) != len(want.Fields) || m.Fields[0] != want.Fields[0] {
			t.Fatalf("message %d has fields %q, want %q (out of order?)", i, m.Fields, want.Fields)
		}
		if m.PID != os.Getpid() || m.UID != os.Getuid() || m.GID != os.Getgid() {
			t.Errorf("message %d credentials pid=%d uid=%d gid=%d, want %d %d %d",
				i, m.PID, m.UID, m.GID, os.Getpid(), os.Getuid(), os.Getgid())
		}
	}
	if s.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0", s.Dropped())
	}
}

func TestServerDropsOversizedDatagrams(t *testing.T) {
	s, ch := listenTest(t)
	pad := func(n int) []byte { return []byte("X_PAD=" + strings.Repeat("a", n-len("X_PAD="))) }
	send(t, s.Addr(), pad(MaxMessageSize+1), nil) // fills the 4097-byte buffer exactly
	send(t, s.Addr(), pad(3*MaxMessageSize), nil) // truncated by the kernel (MSG_TRUNC)
	send(t, s.Addr(), pad(MaxMessageSize), nil)   // the limit itself is fine
	send(t, s.Addr(), []byte("STATUS=sentinel"), nil)

	m := recvMsg(t, ch)
	if v, _ := m.Get("X_PAD"); len(v) != MaxMessageSize-len("X_PAD=") {
		t.Fatalf("first handled message has an X_PAD of %d bytes, want the %d-byte one", len(v), MaxMessageSize-len("X_PAD="))
	}
	expectStatus(t, ch, "sentinel")
	if got := s.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2", got)
	}
}

func TestServerDropsNULDatagrams(t *testing.T) {
	s, ch := listenTest(t)
	send(t, s.Addr(), []byte("READY=1\x00STATUS=hidden"), nil)
	send(t, s.Addr(), []byte("\x00"), nil)
	send(t, s.Addr(), []byte("STATUS=sentinel"), nil)
	m := expectStatus(t, ch, "sentinel")
	if m.Ready {
		t.Error("the sentinel carries READY=1 from the dropped datagram")
	}
	if got := s.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2", got)
	}
}

// pipeWithDeadline returns a pipe whose read end times out after waitLimit.
func pipeWithDeadline(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	if err := r.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	return r, w
}

// rawFD returns f's descriptor without File.Fd's side effect of making it blocking, which would
// disable the read deadline. The descriptor stays valid until f is closed.
func rawFD(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// expectEOF reads r until the receiver's copy of the write end is closed.
func expectEOF(t *testing.T, r *os.File) {
	t.Helper()
	n, err := r.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read on the pipe = %d, %v; want EOF once the server closed the fd it received", n, err)
	}
}

func TestServerClosesReceivedFDs(t *testing.T) {
	s, ch := listenTest(t)
	r1, w1 := pipeWithDeadline(t)
	r2, w2 := pipeWithDeadline(t)
	send(t, s.Addr(), []byte("X_WITH_FDS=1"), unix.UnixRights(rawFD(t, w1), rawFD(t, w2)))
	w1.Close()
	w2.Close()

	m := recvMsg(t, ch)
	if v, ok := m.Get("X_WITH_FDS"); !ok || v != "1" {
		t.Fatalf("handled fields %q, want X_WITH_FDS=1", m.Fields)
	}
	expectEOF(t, r1)
	expectEOF(t, r2)
}

func TestServerBarrierClosedAfterEarlierMessages(t *testing.T) {
	entered := make(chan Message, 1)
	release := make(chan struct{})
	rest := make(chan Message, 8)
	first := true
	s := listenWith(t, filepath.Join(shortDir(t), "notify"), func(m Message) {
		if first {
			first = false
			entered <- m
			<-release
			return
		}
		rest <- m
	})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	r, w := pipeWithDeadline(t)
	send(t, s.Addr(), []byte("READY=1"), nil)
	send(t, s.Addr(), []byte("BARRIER=1"), unix.UnixRights(rawFD(t, w)))
	w.Close()

	select {
	case m := <-entered:
		if !m.Ready {
			t.Fatalf("first message %q, want READY=1", m.Fields)
		}
	case <-time.After(waitLimit):
		t.Fatalf("handler not called within %v", waitLimit)
	}
	// The handler still holds READY=1, so the barrier fd must still be open: no hangup on the pipe.
	fds := []unix.PollFd{{Fd: int32(rawFD(t, r)), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("barrier fd closed (revents %#x) while the message before it was still being handled", fds[0].Revents)
	}
	close(release)
	released = true
	expectEOF(t, r)

	send(t, s.Addr(), []byte("STATUS=sentinel"), nil)
	select {
	case m := <-rest:
		if m.Status == nil || *m.Status != "sentinel" {
			t.Fatalf("handler got %q after the barrier, want only the sentinel (a barrier is never handed on)", m.Fields)
		}
	case <-time.After(waitLimit):
		t.Fatalf("sentinel not handled within %v", waitLimit)
	}
	if s.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0", s.Dropped())
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "notify")
	old, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	old.Close() // a datagram socket leaves its file behind
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket missing before the test: %v", err)
	}
	ch := make(chan Message, 1)
	s := listenWith(t, path, func(m Message) { ch <- m })
	send(t, s.Addr(), []byte("STATUS=sentinel"), nil)
	expectStatus(t, ch, "sentinel")
}

func TestListenRefusesNonSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "notify")
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Listen(path, func(Message) {})
	if err == nil {
		s.Close()
		t.Fatal("Listen over a regular file succeeded")
	}
	if !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("error %q does not say the file is not a socket", err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "keep me" {
		t.Errorf("the regular file was touched: %q, %v", data, err)
	}
}

func TestListenErrors(t *testing.T) {
	long := "/" + strings.Repeat("d", maxPathLen)
	if s, err := Listen(long, func(Message) {}); err == nil {
		s.Close()
		t.Error("Listen with a path longer than sun_path succeeded")
	} else if !strings.Contains(err.Error(), "shorter") {
		t.Errorf("error %q does not say how to fix it", err)
	}
	if _, err := Listen(filepath.Join(shortDir(t), "x"), nil); err == nil {
		t.Error("Listen with a nil handler succeeded")
	}
	if _, err := Listen(filepath.Join(shortDir(t), "missing", "x"), func(Message) {}); err == nil {
		t.Error("Listen in a missing directory succeeded")
	}
}

func TestCloseRemovesOnlyItsOwnSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "notify")
	a, err := Listen(path, func(Message) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after Close: %v, want it removed", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	first, err := Listen(path, func(Message) {})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan Message, 1)
	second := listenWith(t, path, func(m Message) { ch <- m }) // replaces first's file
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	send(t, second.Addr(), []byte("STATUS=sentinel"), nil)
	expectStatus(t, ch, "sentinel")
}

func TestServerAbstractSocket(t *testing.T) {
	ch := make(chan Message, 1)
	name := fmt.Sprintf("@opsvc-sdnotify-test-%d", os.Getpid())
	s := listenWith(t, name, func(m Message) { ch <- m })
	if s.Addr() != name {
		t.Fatalf("Addr() = %q, want %q", s.Addr(), name)
	}
	send(t, s.Addr(), []byte("READY=1\nSTATUS=sentinel"), nil)
	if m := expectStatus(t, ch, "sentinel"); !m.Ready || m.PID != os.Getpid() {
		t.Errorf("got ready=%v pid=%d, want ready from pid %d", m.Ready, m.PID, os.Getpid())
	}
}

// TestSystemdNotify runs Debian's real systemd-notify, from a shell, against the server. As root it
// sends with its parent's (the shell's) pid, then, unless --no-block, a BARRIER=1 datagram whose fd it
// waits on for 5 s and fails ("Failed to invoke barrier") if it is not closed.
func TestSystemdNotify(t *testing.T) {
	if _, err := exec.LookPath("systemd-notify"); err != nil {
		t.Skip("systemd-notify is not on PATH; `apt-get install systemd` provides it")
	}
	tests := []struct {
		name    string
		args    []string
		barrier bool
		check   func(t *testing.T, m Message, child int)
	}{
		{"ready", []string{"--ready", "--status=up and running"}, true, checkReady},
		{"ready no-block", []string{"--no-block", "--ready", "--status=up and running"}, false, checkReady},
		{"watchdog", []string{"WATCHDOG=1"}, true, checkWatchdog},
		{"watchdog no-block", []string{"--no-block", "WATCHDOG=1"}, false, checkWatchdog},
		{"pid self", []string{"--pid=self", "--no-block", "WATCHDOG=1"}, false, func(t *testing.T, m Message, child int) {
			checkWatchdog(t, m, child)
			if m.MainPID != child {
				t.Errorf("MainPID = %d, want systemd-notify's own pid %d", m.MainPID, child)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSystemdNotify(t, tt.args, tt.barrier, tt.check) })
	}
}

func checkReady(t *testing.T, m Message, _ int) {
	if !m.Ready || m.Status == nil || *m.Status != "up and running" {
		t.Errorf("message %q: want READY=1 and STATUS=up and running", m.Fields)
	}
}

func checkWatchdog(t *testing.T, m Message, _ int) {
	if !m.Watchdog {
		t.Errorf("message %q: want WATCHDOG=1", m.Fields)
	}
}

type notified struct {
	msg    Message
	inTree bool // the sender is the shell or a descendant of it, checked while the message was handled
}

func runSystemdNotify(t *testing.T, args []string, barrier bool, check func(*testing.T, Message, int)) {
	started := make(chan struct{})
	var shPID int
	ch := make(chan notified, 8)
	s := listenWith(t, filepath.Join(shortDir(t), "notify"), func(m Message) {
		select {
		case <-started:
		case <-time.After(waitLimit):
		}
		ch <- notified{msg: m, inTree: m.PID == shPID || IsDescendant(m.PID, shPID)}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c",
		`systemd-notify "$@" & echo child=$!; wait $!; echo rc=$?`, "sh"}, args...)...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+s.Addr(), "MANAGERPID="+strconv.Itoa(os.Getpid()))
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	shPID = cmd.Process.Pid
	close(started)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sh: %v; output:\n%s", err, out.String())
	}
	output := out.String()
	if !strings.Contains(output, "rc=0\n") {
		t.Fatalf("systemd-notify did not exit 0 (a barrier fd left open makes it fail after 5 s); output:\n%s", output)
	}
	match := regexp.MustCompile(`child=(\d+)`).FindStringSubmatch(output)
	if match == nil {
		t.Fatalf("no child pid in output:\n%s", output)
	}
	child, _ := strconv.Atoi(match[1])

	var got notified
	select {
	case got = <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("no message within %v; output:\n%s", waitLimit, output)
	}
	m := got.msg
	t.Logf("sh=%d systemd-notify=%d: message from pid %d: %q", shPID, child, m.PID, m.Fields)
	check(t, m, child)
	if m.PID != shPID && m.PID != child {
		t.Errorf("sender pid %d is neither the shell (%d) nor systemd-notify (%d)", m.PID, shPID, child)
	}
	if barrier && !got.inTree {
		t.Errorf("sender pid %d was not the shell %d or a descendant of it while the barrier held it", m.PID, shPID)
	}
	if os.Geteuid() == 0 && !slicesContains(args, "--pid=self") && m.PID != shPID {
		t.Errorf("as root, systemd-notify sent from pid %d, want its parent, the shell (%d)", m.PID, shPID)
	}

	// Nothing else was handed on: no barrier, no ERRNO= from a timed-out barrier.
	send(t, s.Addr(), []byte("STATUS=sentinel"), nil)
	select {
	case n := <-ch:
		if n.msg.Status == nil || *n.msg.Status != "sentinel" {
			t.Errorf("unexpected extra message %q", n.msg.Fields)
		}
	case <-time.After(waitLimit):
		t.Fatalf("sentinel not handled within %v", waitLimit)
	}
	if s.Dropped() != 0 {
		t.Errorf("Dropped() = %d, want 0", s.Dropped())
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestDispatchDropsWithoutCredentialsOrTruncated covers what the kernel never produces on demand: a
// datagram without credentials (or with pid 0) and truncated control data. Each is dropped and its fd
// still closed.
func TestDispatchDropsWithoutCredentialsOrTruncated(t *testing.T) {
	s, ch := listenTest(t)
	self := &unix.Ucred{Pid: int32(os.Getpid()), Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
	noPID := &unix.Ucred{Uid: uint32(os.Getuid()), Gid: uint32(os.Getgid())}
	for i, tt := range []struct {
		name  string
		cred  *unix.Ucred
		flags int
	}{
		{"no credentials", nil, 0},
		{"pid 0", noPID, 0},
		{"control data truncated", self, unix.MSG_CTRUNC},
		{"payload truncated", self, unix.MSG_TRUNC},
	} {
		r, w := pipeWithDeadline(t)
		fd, err := unix.Dup(rawFD(t, w)) // dispatch owns and closes this copy
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		var oob []byte
		if tt.cred != nil {
			oob = unix.UnixCredentials(tt.cred)
		}
		oob = append(oob, unix.UnixRights(fd)...)
		s.dispatch([]byte("READY=1"), oob, tt.flags)
		if got := s.Dropped(); got != uint64(i+1) {
			t.Errorf("%s: Dropped() = %d, want %d", tt.name, got, i+1)
		}
		expectEOF(t, r)
	}
	send(t, s.Addr(), []byte("STATUS=sentinel"), nil)
	expectStatus(t, ch, "sentinel")
}
