//go:build !unix

package unit

import "errors"

func mkfifo(string) error { return errors.New("no FIFOs on this system") }
