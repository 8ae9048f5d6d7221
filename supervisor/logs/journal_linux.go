package logs

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// journalSink sends each line as one datagram of journald's native protocol to a unixgram
// socket; an entry too large for a datagram goes as a sealed memfd (or an unlinked /dev/shm
// file) passed with SCM_RIGHTS. Only the Logs goroutine calls write.
type journalSink struct {
	path   string
	addr   *net.UnixAddr
	sndbuf int
	buf    []byte

	mu      sync.Mutex // conn and aborted: abort comes from Close's goroutine
	conn    *net.UnixConn
	aborted bool
}

// newJournalSink checks that path is a socket and connects to it; the connected socket makes
// a full journald queue block the sender (instead of failing) until journald reads on.
func newJournalSink(path string, sndbuf int) (*journalSink, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("logs: journald socket: %w", err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return nil, fmt.Errorf("logs: journald socket %s: not a socket", path)
	}
	j := &journalSink{path: path, addr: &net.UnixAddr{Name: path, Net: "unixgram"}, sndbuf: sndbuf}
	if j.conn, err = j.dial(); err != nil {
		return nil, err
	}
	return j, nil
}

func (j *journalSink) dial() (*net.UnixConn, error) {
	c, err := net.DialUnix("unixgram", nil, j.addr)
	if err != nil {
		return nil, fmt.Errorf("logs: connect to journald at %s: %w", j.path, err)
	}
	if j.sndbuf > 0 {
		_ = c.SetWriteBuffer(j.sndbuf) // best effort: the kernel caps it at net.core.wmem_max
	}
	return c, nil
}

func (j *journalSink) write(line Line) error {
	j.buf = journalEntry(j.buf[:0], line)
	err := j.send(j.buf)
	if err != nil && reconnectable(err) {
		// journald restarted: its socket is a new one.
		if rerr := j.redial(); rerr == nil {
			err = j.send(j.buf)
		}
	}
	return err
}

func reconnectable(err error) bool {
	for _, e := range []syscall.Errno{unix.ECONNREFUSED, unix.ENOTCONN, unix.ECONNRESET, unix.EPIPE, unix.ENOENT, unix.EDESTADDRREQ} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (j *journalSink) current() *net.UnixConn {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.conn
}

func (j *journalSink) redial() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.aborted || j.conn == nil {
		return errors.New("logs: journald sink closed")
	}
	c, err := j.dial()
	if err != nil {
		return err
	}
	j.conn.Close()
	j.conn = c
	return nil
}

func (j *journalSink) send(entry []byte) error {
	conn := j.current()
	if conn == nil {
		return errors.New("logs: journald sink closed")
	}
	_, err := conn.Write(entry)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EMSGSIZE) || errors.Is(err, unix.ENOBUFS) {
		return j.sendFD(conn, entry)
	}
	return fmt.Errorf("logs: send to journald at %s: %w", j.path, err)
}

// sendFD passes a large entry as a file descriptor with an empty datagram.
func (j *journalSink) sendFD(conn *net.UnixConn, entry []byte) error {
	fd, err := sealedMemfd(entry)
	if err != nil {
		var ferr error
		if fd, ferr = shmFile(entry); ferr != nil {
			return fmt.Errorf("logs: send large entry to journald: %w; %w", err, ferr)
		}
	}
	defer unix.Close(fd)
	// net.UnixConn has no sendmsg for a connected datagram socket; the raw conn keeps the
	// poller and the write deadline.
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("logs: send large entry to journald at %s: %w", j.path, err)
	}
	var serr error
	err = rc.Write(func(s uintptr) bool {
		for {
			serr = unix.Sendmsg(int(s), nil, unix.UnixRights(fd), nil, 0)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("logs: send large entry to journald at %s: %w", j.path, err)
	}
	return nil
}

// sealedMemfd returns a memfd holding data, sealed against any change (journald accepts such an
// fd from any sender).
func sealedMemfd(data []byte) (int, error) {
	fd, err := unix.MemfdCreate("opsvc-journal", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("memfd_create: %w", err)
	}
	if err := writeAll(fd, data); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("write memfd: %w", err)
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("seal memfd: %w", err)
	}
	return fd, nil
}

// shmFile returns an unlinked file in /dev/shm holding data (journald accepts fds of files
// directly in /dev/shm).
func shmFile(data []byte) (int, error) {
	f, err := os.CreateTemp("/dev/shm", "opsvc-journal.*")
	if err != nil {
		return -1, err
	}
	defer f.Close()
	os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		return -1, err
	}
	return unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
}

func writeAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return err
		}
		data = data[n:]
	}
	return nil
}

func (j *journalSink) abort() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.aborted = true
	if j.conn != nil {
		_ = j.conn.SetWriteDeadline(time.Unix(1, 0))
	}
}

func (j *journalSink) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn == nil {
		return nil
	}
	err := j.conn.Close()
	j.conn = nil
	if err != nil {
		return fmt.Errorf("logs: close journald socket: %w", err)
	}
	return nil
}
