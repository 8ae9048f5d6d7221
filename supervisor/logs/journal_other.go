//go:build !linux

package logs

import "errors"

// newJournalSink: journald is Linux only; elsewhere lines go to files.
func newJournalSink(path string, sndbuf int) (sink, error) {
	return nil, errors.New("logs: journald is only available on Linux")
}
