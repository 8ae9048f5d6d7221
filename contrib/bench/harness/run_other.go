//go:build !linux

package main

import "errors"

func run(options) error {
	return errors.New("the benchmark runs on Linux only (it reads /proc and the kernel's process events)")
}
