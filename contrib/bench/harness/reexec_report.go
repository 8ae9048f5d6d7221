package main

import (
	"fmt"
	"io"
)

// reexecRun is opsvc's re-exec downtime at one unit count, and a full
// restart of the daemon at the same count.
type reexecRun struct {
	N int `json:"n"`
	// DowntimeS: SIGUSR2 → the first answer of GET /v1/units by the new image.
	DowntimeS []float64 `json:"downtime_s"`
	// MaxGapS: the longest time without an answer seen by a client polling
	// GET /v1/units back to back, from the signal on.
	MaxGapS  []float64 `json:"max_gap_s"`
	PIDsKept bool      `json:"pids_kept"`
	// The same for `opsvc daemon --replace`: its start → the first answer
	// of the new daemon, and the longest gap.
	ReplaceS        []float64 `json:"replace_s,omitempty"`
	ReplaceGapS     []float64 `json:"replace_gap_s,omitempty"`
	ReplacePIDsKept *bool     `json:"replace_pids_kept,omitempty"`
	// Stop + start: SIGTERM → the socket answers again, and → every unit
	// active again (workers restarted).
	RestartAnswerS *float64 `json:"restart_answer_s,omitempty"`
	RestartAllS    *float64 `json:"restart_all_s,omitempty"`
}

// writeReexec adds the re-exec lines to the opsvc-only table.
func (r *results) writeReexec(w io.Writer) {
	for _, x := range r.Opsvc.Reexec {
		if len(x.DowntimeS) > 0 {
			p50, _ := median(x.DowntimeS)
			m, _ := maxOf(x.DowntimeS)
			g, _ := maxOf(x.MaxGapS)
			kept := "every pid kept"
			if !x.PIDsKept {
				kept = "PIDS CHANGED"
			}
			// The downtime is the gap a client saw: "answers again"
			// also counts the new binary's check of the state, while
			// the old process still answers.
			met := "yes"
			if g >= 0.100 {
				met = "no"
			}
			goal := ""
			if x.N >= 1000 {
				goal = fmt.Sprintf("; goal < 100 ms (longest gap) met: %s", met)
			}
			fmt.Fprintf(w, "| re-exec (SIGUSR2) with %d units: socket answers again, p50 / max (%d runs); longest gap seen by a polling client; %s | %.1f ms / %.1f ms; %.1f ms%s |\n",
				x.N, len(x.DowntimeS), kept, p50*1000, m*1000, g*1000, goal)
		}
		if len(x.ReplaceS) > 0 {
			p50, _ := median(x.ReplaceS)
			m, _ := maxOf(x.ReplaceS)
			g, _ := maxOf(x.ReplaceGapS)
			kept := "every pid kept"
			if x.ReplacePIDsKept == nil || !*x.ReplacePIDsKept {
				kept = "PIDS CHANGED"
			}
			fmt.Fprintf(w, "| `opsvc daemon --replace` with %d units: socket answers again, p50 / max (%d runs); longest gap seen by a polling client; %s | %.1f ms / %.1f ms; %.1f ms |\n",
				x.N, len(x.ReplaceS), kept, p50*1000, m*1000, g*1000)
		}
		if x.RestartAnswerS != nil && x.RestartAllS != nil {
			fmt.Fprintf(w, "| the same %d units, daemon stopped and started (workers restarted): socket answers again; every unit active again | %.1f ms; %.1f ms |\n",
				x.N, *x.RestartAnswerS*1000, *x.RestartAllS*1000)
		}
	}
}
