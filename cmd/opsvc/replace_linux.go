package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/handover"
)

// A daemon started with --replace takes over from the one running on the
// same socket and state directory: it asks for a handover
// (POST /v1/daemon/handover), gets the state record and every file on the
// same connection once the answer is 101 Switching Protocols, answers
// whether it takes over, waits for the old daemon to exit, and starts with
// what it got, as after a re-exec.

// replaceTimeout bounds the exchange with the running daemon, from the
// request to the last file received; the old daemon waits as long for the
// answer.
const replaceTimeout = 60 * time.Second

// oldExitTimeout bounds the wait for the old daemon to exit once it has
// handed over; it is then killed, and waited for as long again.
const oldExitTimeout = 10 * time.Second

// Bounds of the running daemon's answer to the request.
const (
	maxAnswerHead = 16 << 10
	maxAnswerBody = 64 << 10
)

// handOver is the running daemon's side of POST /v1/daemon/handover: it
// checks the request, pauses control, freezes the loop and returns the
// step that sends the state and files to the new daemon, then exits the
// process if the new daemon takes over. On an error the daemon runs on.
func (x *reexecer) handOver(ctx context.Context, r *http.Request, req api.HandoverRequest) (func(*net.UnixConn, error), error) {
	if !x.mu.TryLock() {
		return nil, errors.New("a re-exec or handover is already under way")
	}
	rewatch := func() {}
	refuse := func(err error) error {
		x.bus.Publish(bus.Event{Type: api.TypeDaemonReexecRefused, PID: os.Getpid(), Data: api.Map(api.DaemonReexecRefused{Executable: req.Executable, Reason: err.Error()})})
		x.logf("handover refused: %v; running on", err)
		rewatch()
		x.mu.Unlock()
		return err
	}
	switch {
	case req.Version != handover.Version:
		return nil, refuse(fmt.Errorf("the new daemon reads state records of version %d, this one writes version %d (install a binary that reads version %d, or stop this daemon and start the new one)", req.Version, handover.Version, handover.Version))
	case !sameDir(req.State, x.state):
		return nil, refuse(fmt.Errorf("the new daemon's state directory is %s, this one's is %s (start it with --state %s)", req.State, x.state, x.state))
	case x.managed:
		return nil, refuse(errors.New("this daemon runs under a service manager, which would end its workers once it exits (use opsvc daemon-reexec, which keeps the process)"))
	}
	peer := 0
	if p, ok := supervisor.RequestPeer(r); ok {
		peer = p.PID
	}
	// The watches end first: closing them waits for the kernel, and this
	// process holds the state directory's lock until it has exited.
	unwatched, rw, err := x.sup.Unwatch(ctx)
	if err != nil {
		return nil, refuse(err)
	}
	rewatch = rw
	lf, fr, resumeServing, err := x.pauseAndFreeze(ctx, "handover")
	if err != nil {
		return nil, refuse(err)
	}
	x.bus.Publish(bus.Event{Type: api.TypeDaemonReexec, PID: os.Getpid(), Data: api.Map(api.DaemonReexec{Executable: req.Executable, Units: len(fr.Record.Units), Takeover: true})})
	return func(conn *net.UnixConn, err error) {
		if err == nil {
			waitUnwatched(unwatched)
			err = x.send(conn, fr, lf)
		}
		if err == nil {
			x.exitHandedOver(peer)
		}
		// The new daemon did not take over: the workers are this one's
		// again.
		delete(fr.Files, handover.NameControl)
		fr.Thaw()
		resumeServing()
		refuse(err)
	}, nil
}

// send hands the frozen state and files, with the control socket, to the
// new daemon on conn; nil means it takes over.
func (x *reexecer) send(conn *net.UnixConn, fr *supervisor.Frozen, lf *os.File) error {
	conn.SetDeadline(time.Now().Add(replaceTimeout))
	fr.Files[handover.NameControl] = lf
	if err := handover.Send(conn, fr.Record, fr.Files); err != nil {
		return err
	}
	return handover.ReadAnswer(conn)
}

// exitHandedOver ends this daemon once a new one took over its workers: the
// logs written, the event log closed, and nothing stopped or removed (the
// workers, the control socket and the state are the new daemon's).
func (x *reexecer) exitHandedOver(peer int) {
	x.logf("handed over to the daemon with pid %d; exiting, the workers run on", peer)
	if !x.logs.Flush(2 * time.Second) {
		x.logf("handover: some log lines were not written yet")
	}
	x.logs.Close()
	x.bus.Close()
	os.Exit(exitOK)
}

// sameDir reports whether a and b are the same directory.
func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// replaceRunning is the new daemon's side: it asks the daemon on socket to
// hand over, and returns its state and files once it has exited. With no
// daemon on the socket it returns nil, nil, nil: the new one starts afresh.
// An error says why the running daemon (which then runs on) or this one
// refused.
func replaceRunning(socket, state, exe string, logf func(string, ...any)) (*handover.Record, handover.Files, error) {
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			logf("no daemon answers on %s: starting afresh", socket)
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("connect to %s: %v (check --socket, and that this user may use it)", socket, err)
	}
	uc := conn.(*net.UnixConn)
	defer uc.Close()
	oldPID, oldUID := 0, -1
	if raw, err := uc.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
				oldPID, oldUID = int(cred.Pid), int(cred.Uid)
			}
		})
	}
	if oldPID <= 0 {
		return nil, nil, fmt.Errorf("the process on %s is not known (its peer credentials cannot be read; stop it and start this daemon without --replace)", socket)
	}
	// Its workers would become this daemon's: only from root or this user.
	if oldUID != 0 && oldUID != os.Geteuid() {
		return nil, nil, fmt.Errorf("the daemon on %s runs as uid %d, not as root or this user (run opsvc daemon --replace as uid %d)", socket, oldUID, oldUID)
	}
	uc.SetDeadline(time.Now().Add(replaceTimeout))
	body, err := json.Marshal(api.HandoverRequest{Version: handover.Version, State: state, Executable: exe})
	if err != nil {
		return nil, nil, err
	}
	req := fmt.Sprintf("POST /v1/daemon/handover HTTP/1.1\r\nHost: opsvc\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", len(body), api.HandoverUpgrade)
	if _, err := uc.Write(append([]byte(req), body...)); err != nil {
		return nil, nil, fmt.Errorf("ask the daemon on %s: %v (is it running?)", socket, err)
	}
	code, head, err := readAnswerHead(uc)
	if err != nil {
		return nil, nil, fmt.Errorf("read the answer of the daemon on %s: %v (is it an opsvc daemon, as new as this one?)", socket, err)
	}
	if code != http.StatusSwitchingProtocols {
		return nil, nil, answerError(uc, code, head)
	}
	if !strings.EqualFold(head.Get("Upgrade"), api.HandoverUpgrade) {
		return nil, nil, fmt.Errorf("the daemon on %s switched to %q, not %s (it is not an opsvc daemon that can hand over)", socket, head.Get("Upgrade"), api.HandoverUpgrade)
	}
	rec, files, err := handover.Receive(uc)
	if err != nil {
		handover.Answer(uc, err)
		return nil, nil, fmt.Errorf("receive the state: %s (the running daemon keeps its workers)", strings.TrimPrefix(err.Error(), "handover: "))
	}
	// The listening socket keeps the credentials of the process that made
	// it: after an earlier --replace, those of a daemon gone since. The
	// daemon that holds the state directory wrote its pid in the lock.
	if rec.PID != oldPID && rec.PID == stateHolder(state) {
		oldPID = rec.PID
	}
	if err := checkHandedOver(rec, files, oldPID); err != nil {
		handover.Answer(uc, err)
		files.Close()
		return nil, nil, fmt.Errorf("%v (the running daemon keeps its workers)", err)
	}
	if err := handover.Answer(uc, nil); err != nil {
		files.Close()
		return nil, nil, fmt.Errorf("answer the running daemon: %v (it keeps its workers)", err)
	}
	if err := waitGone(oldPID, logf); err != nil {
		files.Close()
		return nil, nil, err
	}
	return rec, files, nil
}

// checkHandedOver checks what the daemon with pid sent, as --check-state
// does and more: its record (Receive decoded it, version included), from
// that daemon, with its control socket.
func checkHandedOver(rec *handover.Record, files handover.Files, pid int) error {
	if rec.PID != pid {
		return fmt.Errorf("the state record is from pid %d, the daemon that sent it is pid %d", rec.PID, pid)
	}
	if files[handover.NameControl] == nil {
		return errors.New("the control socket was not handed over")
	}
	for _, u := range rec.Units {
		if u.Name == "" {
			return errors.New("the state record has a unit with no name")
		}
	}
	return nil
}

// readAnswerHead reads the answer's status line and headers one byte at a
// time, so that nothing after them (the handover's frames, which carry
// files) is read ahead.
func readAnswerHead(c net.Conn) (int, http.Header, error) {
	var b []byte
	one := make([]byte, 1)
	for !bytes.HasSuffix(b, []byte("\r\n\r\n")) {
		if len(b) >= maxAnswerHead {
			return 0, nil, fmt.Errorf("headers over %d bytes", maxAnswerHead)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			return 0, nil, err
		}
		b = append(b, one[0])
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\r\n\r\n"), "\r\n")
	f := strings.Fields(lines[0])
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return 0, nil, fmt.Errorf("not an HTTP answer: %.80q", lines[0])
	}
	code, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, nil, fmt.Errorf("not an HTTP answer: %.80q", lines[0])
	}
	h := make(http.Header)
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok {
			h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return code, h, nil
}

// answerError is the running daemon's refusal, from its error answer.
func answerError(c net.Conn, code int, head http.Header) error {
	n, err := strconv.Atoi(head.Get("Content-Length"))
	if err != nil || n < 0 || n > maxAnswerBody {
		n = maxAnswerBody
	}
	body, _ := io.ReadAll(io.LimitReader(c, int64(n)))
	var e api.Error
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		switch {
		case e.Hint == "":
			return errors.New(e.Message)
		case strings.HasSuffix(e.Message, ")"): // the reason has its own hint
			return fmt.Errorf("%s; %s)", strings.TrimSuffix(e.Message, ")"), e.Hint)
		}
		return fmt.Errorf("%s (%s)", e.Message, e.Hint)
	}
	return fmt.Errorf("the daemon answered %d %s (is it an opsvc daemon, as new as this one?)", code, http.StatusText(code))
}

// waitGone waits for the old daemon to exit once it has handed over, and
// kills it past oldExitTimeout.
func waitGone(pid int, logf func(string, ...any)) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("wait for the old daemon (pid %d) to exit: %v (stop it by hand, then start this one without --replace)", pid, err)
	}
	defer unix.Close(fd)
	wait := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				return false
			}
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
			if n > 0 {
				return true
			}
			if err != nil && !errors.Is(err, unix.EINTR) {
				return false
			}
		}
	}
	if wait(oldExitTimeout) {
		return nil
	}
	logf("the old daemon (pid %d) did not exit within %v of handing over: killing it", pid, oldExitTimeout)
	unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	if wait(oldExitTimeout) {
		return nil
	}
	return fmt.Errorf("the old daemon (pid %d) did not exit after SIGKILL (see what holds it: cat /proc/%d/stack)", pid, pid)
}
