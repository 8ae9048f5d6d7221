// Package proctrack keeps track of every process a unit starts, so that none
// outlives its unit or a restart of the daemon.
//
// Where the daemon can create a cgroup v2 sub-tree, each run of a unit gets
// its own cgroup below one kept for the state directory, the worker is forked
// straight into it, and ending the run kills the whole cgroup: a process that
// calls setsid or double-forks stays inside. Elsewhere it falls back to the
// unit's process group, a marker in every worker's environment, and a record
// in the state directory (unit, pid, start time) that the next daemon on the
// same state directory reads to end what a killed daemon left behind, before
// it starts anything.
//
// It is Linux only: on other systems the package is empty and the daemon does
// not run units.
package proctrack
