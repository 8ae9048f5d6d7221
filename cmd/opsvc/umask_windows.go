package main

// withUmask runs f: windows has no umask; access to what f creates follows
// the directory's ACL.
func withUmask(mask int, f func()) { f() }
