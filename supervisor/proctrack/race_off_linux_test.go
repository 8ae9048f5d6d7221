//go:build !race

package proctrack

const raceEnabled = false
