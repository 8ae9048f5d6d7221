//go:build !windows

package main

import (
	"context"
	"errors"
	"net"
)

// isPipe: named pipes are Windows's; the control address is a unix socket.
func isPipe(string) bool { return false }

func listenPipe(name string) (net.Listener, error) {
	return nil, errors.New("named pipes are only on Windows (use a socket path)")
}

// dialControl connects to the daemon's unix socket.
func dialControl(ctx context.Context, sock string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", sock)
}
