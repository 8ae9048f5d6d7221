package supervisor

import "net"

// peerCred: a unix socket on windows does not tell who its peer is. The
// daemon does not run there (see NewExecRunner), so no request is served
// without an access check.
func peerCred(uc *net.UnixConn) (Peer, bool) { return Peer{}, false }
