package supervisor

import (
	"net"

	"github.com/opsvc/opsvc/supervisor/npipe"
)

// peerCred: a unix socket on windows does not tell who its peer is.
func peerCred(uc *net.UnixConn) (Peer, bool) { return Peer{}, false }

// pipePeer reads who is on the other end of a control pipe: the client's
// process id (GetNamedPipeClientProcessId) and its token's user SID. Windows
// has no uid: UID is -1. A client that is gone before it is asked still
// counts as a pipe client (the pipe's DACL admitted it), with what could be
// read.
func pipePeer(c net.Conn) (Peer, bool) {
	pc, ok := c.(*npipe.Conn)
	if !ok {
		return Peer{}, false
	}
	p := Peer{UID: -1}
	pid, sid, err := pc.Peer()
	p.PID = int(pid)
	if err == nil {
		p.SID = sid
	}
	return p, true
}
