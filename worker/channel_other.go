//go:build !unix && !windows

package worker

import (
	"errors"
	"os"
)

// socketpair is not there yet: the channel is a unix stream socket passed as fd 3.
func socketpair() (parent, child *os.File, err error) {
	return nil, nil, errors.New("socketpair: IPC channels are not supported on this platform yet")
}
