package main

import (
	"flag"
	"slices"
)

// scaleOpts are the settings of the scale run (-scale): every supervisor at
// N = 100, 1000 and 10,000 where it can, and at each N the figures of
// issue-free large installs (idle CPU, crash → restart, and for opsvc the
// status commands, reload, and loop latency with 1% of units crash-looping).
type scaleOpts struct {
	on        bool
	peerMaxN  int // peers other than opsvc and the floor run N up to this; 0: no cap
	largeReps int // cold-start repetitions at N ≥ largeN
}

func scaleFlags(fs *flag.FlagSet, s *scaleOpts) {
	fs.BoolVar(&s.on, "scale", false, "scale run: N=100,1000,10000 (or -n), and at each N idle CPU, crash → restart, opsvc's status, list, reload and loop latency with 1% of units crash-looping; about 30 minutes with -only opsvc,floor")
	fs.IntVar(&s.peerMaxN, "peer-max-n", 0, "peers other than opsvc and the floor run no N above this (0: every N; -scale: 1000)")
	fs.IntVar(&s.largeReps, "large-reps", 1, "cold-start repetitions at N of 5000 and more")
}

// applyScale completes the options of a scale run once the flags are parsed.
func (o *options) applyScale(fs *flag.FlagSet) {
	if !o.scale.on {
		return
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if !explicit["n"] {
		o.ns = []int{100, 1000, 10000}
	}
	// the status commands and reload are measured at each N of the scale run
	if !explicit["status-n"] {
		o.statusNs = nil
	}
	if !explicit["reload-n"] {
		o.reloadNs = nil
	}
	if !explicit["peer-max-n"] {
		o.scale.peerMaxN = 1000
	}
	if !explicit["idle"] {
		o.idle = 10e9
	}
	if !explicit["budget"] {
		o.budget = 90 * 60e9
	}
}

// scaleSample is what the scale run measured of one supervisor at one N.
type scaleSample struct {
	N         int       `json:"n"`
	IdleCPUS  float64   `json:"idle_cpu_s"`              // CPU time of the supervisor's processes over IdleS
	IdleS     float64   `json:"idle_s"`                  // the idle window
	CrashS    []float64 `json:"crash_s"`                 // crash → new pid alive
	SharedOut bool      `json:"shared_output,omitempty"` // opsvc: units had stderr = "stdout"
	// opsvc only
	StatusJSONS  []float64 `json:"status_json_s,omitempty"` // `opsvc status --json`
	ListS        []float64 `json:"list_s,omitempty"`        // `opsvc list`
	ReloadS      []float64 `json:"reload_s,omitempty"`      // edit → the changed unit's new pid alive
	ReloadOther  *int      `json:"reload_other_stopped,omitempty"`
	LoopMS       []float64 `json:"loop_ms,omitempty"`             // GET /v1/units/NAME round trips, CrashLoop units crash-looping
	CrashLoop    int       `json:"crash_looping,omitempty"`       // units crash-looping meanwhile
	LoopRestarts int       `json:"crash_loop_restarts,omitempty"` // their restarts seen during the round trips
}

// p99 is the nearest-rank 99th percentile.
func p99(xs []float64) (float64, bool) {
	if len(xs) == 0 {
		return 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := (99*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))], true
}
