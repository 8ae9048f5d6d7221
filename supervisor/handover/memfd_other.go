//go:build !linux

package handover

import (
	"errors"
	"os"
)

func errNotLinux() error {
	return errors.New("handover: a handover is only supported on Linux (stop and start the daemon instead)")
}

// WriteMemfd fails on this system.
func WriteMemfd(r *Record) (*os.File, error) { return nil, errNotLinux() }

// Inherit fails on this system.
func Inherit(r *Record, fs Files) error { return errNotLinux() }

// ExecEnv fails on this system.
func ExecEnv(env []string, memfd *os.File) ([]string, error) { return nil, errNotLinux() }

// FromEnv finds no handover on this system.
func FromEnv() (*Record, Files, error) { return nil, nil, nil }
