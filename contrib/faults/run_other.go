//go:build !linux

package main

func run(options) int {
	logf("the fault suite runs on Linux only")
	return 2
}
