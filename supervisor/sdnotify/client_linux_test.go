package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNotifySendsToNotifySocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "manager")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", path)

	for _, state := range []string{"READY=1\nSTATUS=3 units", "WATCHDOG=1"} {
		sent, err := Notify(state)
		if err != nil || !sent {
			t.Fatalf("Notify(%q) = %v, %v; want true, nil", state, sent, err)
		}
		l.SetReadDeadline(time.Now().Add(waitLimit))
		buf := make([]byte, MaxMessageSize)
		n, err := l.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != state {
			t.Errorf("manager received %q, want %q", got, state)
		}
	}
	if got := os.Getenv("NOTIFY_SOCKET"); got != path {
		t.Errorf("NOTIFY_SOCKET = %q after Notify, want it kept as %q", got, path)
	}
}

func TestNotifyToServer(t *testing.T) {
	s, ch := listenTest(t)
	t.Setenv("NOTIFY_SOCKET", s.Addr())
	if sent, err := Notify("STOPPING=1\nSTATUS=bye"); err != nil || !sent {
		t.Fatalf("Notify = %v, %v; want true, nil", sent, err)
	}
	m := recvMsg(t, ch)
	if !m.Stopping || m.Status == nil || *m.Status != "bye" || m.PID != os.Getpid() {
		t.Errorf("server got %q from pid %d, want STOPPING=1 and STATUS=bye from %d", m.Fields, m.PID, os.Getpid())
	}
}

func TestNotifyUnsetAndUnreachable(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	if sent, err := Notify("READY=1"); sent || err != nil {
		t.Errorf("Notify without NOTIFY_SOCKET = %v, %v; want false, nil", sent, err)
	}

	t.Setenv("NOTIFY_SOCKET", filepath.Join(shortDir(t), "nobody-listens"))
	sent, err := Notify("READY=1")
	if sent || err == nil {
		t.Fatalf("Notify to a missing socket = %v, %v; want false and an error", sent, err)
	}
	if !strings.HasPrefix(err.Error(), "sdnotify: ") {
		t.Errorf("error %q lacks the package prefix", err)
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	other := strconv.Itoa(os.Getpid() + 1)
	for _, tt := range []struct {
		name      string
		usec, pid string
		unsetUSec bool
		want      time.Duration
	}{
		{name: "unset", unsetUSec: true, want: 0},
		{name: "set, no pid", usec: "2000000", want: time.Second},
		{name: "set, our pid", usec: "2000000", pid: self, want: time.Second},
		{name: "set, another pid", usec: "2000000", pid: other, want: 0},
		{name: "not a number", usec: "soon", want: 0},
		{name: "zero", usec: "0", want: 0},
		{name: "bad pid", usec: "2000000", pid: "x", want: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			if tt.unsetUSec {
				os.Unsetenv("WATCHDOG_USEC")
			}
			if tt.pid == "" {
				os.Unsetenv("WATCHDOG_PID")
			}
			if got := WatchdogInterval(); got != tt.want {
				t.Errorf("WatchdogInterval() = %v, want %v", got, tt.want)
			}
			if _, ok := os.LookupEnv("WATCHDOG_USEC"); ok == tt.unsetUSec {
				t.Error("WatchdogInterval changed WATCHDOG_USEC")
			}
		})
	}
}
