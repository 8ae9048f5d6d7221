//go:build !linux

package logs

import "errors"

// journalSink does not exist off Linux; lines go to files only.
type journalSink struct{}

func (*journalSink) write(Line) error { return errors.New("logs: journald is only available on Linux") }
func (*journalSink) abort()           {}
func (*journalSink) close() error     { return nil }

// newJournalSink: journald is Linux only; elsewhere lines go to files.
func newJournalSink(path string, sndbuf int) (*journalSink, error) {
	return nil, errors.New("logs: journald is only available on Linux")
}
