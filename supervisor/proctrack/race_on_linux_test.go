//go:build race

package proctrack

// raceEnabled: the race detector makes buffers escape to the heap.
const raceEnabled = true
