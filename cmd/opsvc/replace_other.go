//go:build !linux

package main

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/handover"
)

func errNoReplace() error {
	return errors.New("a daemon hands its workers over only on Linux (stop it, then start the new one)")
}

// handOver refuses on this system.
func (x *reexecer) handOver(ctx context.Context, r *http.Request, req api.HandoverRequest) (func(*net.UnixConn, error), error) {
	return nil, errNoReplace()
}

// replaceRunning refuses on this system.
func replaceRunning(socket, state, exe string, logf func(string, ...any)) (*handover.Record, handover.Files, error) {
	return nil, nil, errNoReplace()
}
