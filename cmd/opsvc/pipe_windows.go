package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/opsvc/opsvc/supervisor/npipe"
)

// isPipe reports whether the control address is a named pipe
// (\\.\pipe\NAME) rather than a unix socket's path.
func isPipe(sock string) bool { return npipe.IsPipeName(sock) }

// listenPipe listens on the control pipe; its DACL admits the daemon's
// user, SYSTEM and the Administrators.
func listenPipe(name string) (net.Listener, error) {
	l, err := npipe.Listen(name, "")
	if errors.Is(err, npipe.ErrInUse) {
		return nil, fmt.Errorf("another daemon is listening on %s (stop it, or use --socket)", name)
	}
	return l, err
}

// dialControl connects to the daemon's pipe (or unix socket).
func dialControl(ctx context.Context, sock string) (net.Conn, error) {
	if !isPipe(sock) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	c, err := npipe.Dial(ctx, sock)
	if errors.Is(err, os.ErrPermission) {
		return nil, errors.New("permission denied: the pipe admits only the daemon's user, SYSTEM and the Administrators (run opsvc as one of them)")
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}
