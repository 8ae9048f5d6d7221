// Package npipe carries the control API and the event bus on Windows: a
// listener and a dialer for local named pipes (\\.\pipe\NAME), whose
// connections are plain net.Conns, so that net/http serves and dials them
// as it does a unix socket.
//
// The listener is built on CreateNamedPipe and ConnectNamedPipe in
// overlapped mode, each wait on an event of its own, and hands connected
// instances to the Go runtime's completion port (os.NewFile), which gives
// them deadlines. It keeps one instance waiting at all times, is the
// first and only owner of its name (FILE_FLAG_FIRST_PIPE_INSTANCE), refuses
// remote clients, and admits only the users its security descriptor names:
// by default SYSTEM, the Administrators and the listening process's user.
//
// On other systems the package only tells pipe names apart (IsPipeName).
package npipe

import "strings"

// DefaultName is the control pipe of a daemon run as a service.
const DefaultName = `\\.\pipe\opsvc`

// IsPipeName reports whether s names a local named pipe (\\.\pipe\NAME;
// slashes are taken for backslashes, case is ignored).
func IsPipeName(s string) bool {
	s = strings.ReplaceAll(s, "/", `\`)
	const prefix = `\\.\pipe\`
	return len(s) > len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
