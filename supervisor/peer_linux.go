package supervisor

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred reads the credentials of a control socket's peer (SO_PEERCRED).
func peerCred(uc *net.UnixConn) (Peer, bool) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, false
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return Peer{}, false
	}
	return Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}, true
}
