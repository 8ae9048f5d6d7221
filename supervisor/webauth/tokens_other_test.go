//go:build !unix

package webauth

func specialFiles() []badFile { return nil }
