//go:build !windows

package logs

// colonIsSeparator: ":" is an ordinary character in a file name here.
const colonIsSeparator = false
