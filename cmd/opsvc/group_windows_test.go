package main

import "errors"

// groupGone: windows has no process groups to look for.
func groupGone(pgid int) error {
	return errors.New("process groups: not supported on windows")
}
