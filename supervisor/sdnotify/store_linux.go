package sdnotify

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// storeTimeout bounds one send to the service manager: a manager that does not read its socket
// stalls the caller no longer than this.
const storeTimeout = time.Second

// maxStoreName is the longest name the service manager accepts for a stored file.
const maxStoreName = 255

// StoreName is the name under which a unit's file of kind KIND is kept in the service manager's file
// descriptor store: "UNIT/KIND". The manager joins names with ':' in LISTEN_FDNAMES and refuses a name
// with one, so a ':' in the unit name is written '%' (neither '/' nor '%' can appear in a unit name).
func StoreName(unit, kind string) string {
	return strings.ReplaceAll(unit, ":", "%") + "/" + kind
}

// SplitStoreName is the inverse of StoreName; ok is false for a name StoreName does not make.
func SplitStoreName(name string) (unit, kind string, ok bool) {
	i := strings.LastIndexByte(name, '/')
	if i <= 0 || i == len(name)-1 {
		return "", "", false
	}
	return strings.ReplaceAll(name[:i], "%", ":"), name[i+1:], true
}

// Store pushes files into the service manager's file descriptor store under name (FDSTORE=1,
// FDNAME=name, the files attached with SCM_RIGHTS); the manager hands them back to the next daemon
// it starts, in LISTEN_FDS and LISTEN_FDNAMES. The files stay open here. It returns (false, nil) when
// NOTIFY_SOCKET is unset. The manager keeps them only if the service sets FileDescriptorStoreMax=.
func Store(name string, files ...*os.File) (sent bool, err error) {
	if err := checkStoreName(name); err != nil {
		return false, err
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	return sendWithFDs("FDSTORE=1\nFDNAME="+name, fds)
}

// Unstore removes every file stored under name (FDSTOREREMOVE=1, FDNAME=name).
func Unstore(name string) (sent bool, err error) {
	if err := checkStoreName(name); err != nil {
		return false, err
	}
	return sendWithFDs("FDSTOREREMOVE=1\nFDNAME="+name, nil)
}

func checkStoreName(name string) error {
	if name == "" || len(name) > maxStoreName {
		return fmt.Errorf("sdnotify: file store name %q: empty or over %d bytes (use a shorter unit name)", name, maxStoreName)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < ' ' || c > '~' || c == ':' {
			return fmt.Errorf("sdnotify: file store name %q: byte %q is not allowed (use StoreName)", name, c)
		}
	}
	return nil
}

// sendWithFDs sends state with fds attached to $NOTIFY_SOCKET.
func sendWithFDs(state string, fds []int) (bool, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return false, nil
	}
	fail := func(err error) (bool, error) {
		return false, fmt.Errorf("sdnotify: store files with the service manager at $NOTIFY_SOCKET: %w", err)
	}
	name := addr
	if strings.HasPrefix(addr, "@") {
		name = "\x00" + addr[1:]
	}
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail(err)
	}
	defer unix.Close(sock)
	tv := unix.NsecToTimeval(storeTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(sock, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fail(err)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for {
		err = unix.Sendmsg(sock, []byte(state), oob, &unix.SockaddrUnix{Name: name}, 0)
		if err != unix.EINTR {
			break
		}
	}
	if errors.Is(err, unix.EAGAIN) {
		err = fmt.Errorf("the manager read nothing for %v", storeTimeout)
	}
	if err != nil {
		return fail(err)
	}
	return true, nil
}

// DupFile returns a second descriptor of the notify socket, close-on-exec; the server goes on reading
// it. It is for keeping the socket in a service manager's file store.
func (s *Server) DupFile() (*os.File, error) {
	raw, err := s.conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("sdnotify: duplicate %s: %w", s.addr, err)
	}
	nfd := -1
	var derr error
	if err := raw.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("sdnotify: duplicate %s: %w", s.addr, err)
	}
	if derr != nil {
		return nil, fmt.Errorf("sdnotify: duplicate %s: %w", s.addr, derr)
	}
	return os.NewFile(uintptr(nfd), "opsvc-notify"), nil
}
