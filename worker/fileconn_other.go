//go:build !windows

package worker

import (
	"net"
	"os"
)

// fileConn makes a connection of f, a connected stream socket, and closes f.
func fileConn(f *os.File) (net.Conn, error) {
	conn, err := net.FileConn(f)
	f.Close()
	return conn, err
}

// nodeChannel: a Node.js worker finds its channel through NODE_CHANNEL_FD.
const nodeChannel = true
