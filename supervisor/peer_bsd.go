//go:build darwin || freebsd

package supervisor

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred reads the credentials of a control socket's peer
// (LOCAL_PEERCRED): its uid and primary gid; the pid is not known.
func peerCred(uc *net.UnixConn) (Peer, bool) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, false
	}
	var cred *unix.Xucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	})
	if cred == nil || cred.Ngroups < 1 {
		return Peer{}, false
	}
	return Peer{UID: int(cred.Uid), GID: int(cred.Groups[0])}, true
}
