package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// results is everything one run measured; it is written as latest.json.
type results struct {
	Meta     meta                          `json:"meta"`
	Peers    []*peerResult                 `json:"peers"`
	Opsvc    opsvcExtra                    `json:"opsvc_only"`
	GoBench  map[string]map[string]float64 `json:"go_benchmarks"` // name → unit → value
	Problems []string                      `json:"problems"`
}

type meta struct {
	Date        string            `json:"date_utc"`
	Command     string            `json:"command"`
	NProc       int               `json:"nproc"`
	Kernel      string            `json:"kernel"`
	OS          string            `json:"os"`
	CPU         string            `json:"cpu"`
	MemTotal    string            `json:"mem_total"`
	GoVersion   string            `json:"go"`
	Commit      string            `json:"commit"`
	Versions    map[string]string `json:"versions"`
	Timing      string            `json:"timing"` // proc connector or polling
	WorkFS      string            `json:"work_fs"`
	LoadStart   string            `json:"loadavg_start"`
	LoadEnd     string            `json:"loadavg_end"`
	DurationS   float64           `json:"duration_s"`
	NList       []int             `json:"n_list"`
	DetailN     int               `json:"detail_n"`
	Reps        int               `json:"reps"`
	StopReps    int               `json:"stop_reps"`
	CrashReps   int               `json:"crash_reps"`
	RapidReps   int               `json:"rapid_reps"`
	IdleS       float64           `json:"idle_s"`
	StopTimeout float64           `json:"stop_timeout_s"`
	EventsLost  int               `json:"events_lost"`
	StatusOnly  bool              `json:"status_only,omitempty"` // -status-only: nothing but the status commands
	ReexecOnly  bool              `json:"reexec_only,omitempty"` // -reexec-only: nothing but the re-exec downtime
}

type peerResult struct {
	Name     string        `json:"name"`
	Version  string        `json:"version,omitempty"`
	Skipped  string        `json:"skipped,omitempty"`
	Cold     []coldSample  `json:"cold_start"`
	Mem      []memSample   `json:"memory"`
	Crash    []float64     `json:"crash_restart_s"`
	Recrash  []float64     `json:"recrash_s"`
	Idle     *idleSample   `json:"idle_cpu,omitempty"`
	Stop     []stopSample  `json:"stop_all"`
	Scale    []scaleSample `json:"scale,omitempty"`     // -scale: figures at each N
	NotRun   []int         `json:"not_run_n,omitempty"` // N left out (-peer-max-n)
	Problems []string      `json:"problems"`
}

type coldSample struct {
	N       int      `json:"n"`
	AllS    float64  `json:"all_alive_s"`
	FirstS  float64  `json:"first_alive_s"`
	StatusS *float64 `json:"status_s"` // nil: no status command
	CmdS    float64  `json:"start_returned_s"`
}

type memSample struct {
	N        int   `json:"n"`
	Restart  bool  `json:"after_restarts"` // measured after every child was killed once
	RSSKB    int64 `json:"rss_kb"`
	PSSKB    int64 `json:"pss_kb"`
	Procs    int   `json:"procs"`
	Children int   `json:"children_under_supervisor"`
}

type idleSample struct {
	N          int     `json:"n"`
	CPUS       float64 `json:"cpu_s"`
	WindowS    float64 `json:"window_s"`
	MachBusyPc float64 `json:"machine_busy_pct"`
}

type stopSample struct {
	Mode      string   `json:"mode"` // graceful | ignore
	Via       string   `json:"via,omitempty"`
	GoneS     *float64 `json:"children_gone_s"` // nil: not all gone
	CmdS      float64  `json:"command_returned_s"`
	Respawned int      `json:"respawned"`
	Note      string   `json:"note,omitempty"`
}

// reloadRun is reload latency measured at one unit count.
type reloadRun struct {
	N      int       `json:"n"`
	S      []float64 `json:"reload_s"`
	ReadyS []float64 `json:"reload_ready_s"`
	Others *int      `json:"reload_other_stopped"`
	Edited int       `json:"reload_edited_stopped"`
}

// statusRun is the time of the status commands at one unit count.
type statusRun struct {
	N           int       `json:"n"`
	StatusJSONS []float64 `json:"status_json_s"`
	ListS       []float64 `json:"list_s"`
	Load        string    `json:"loadavg,omitempty"` // /proc/loadavg just before the runs
}

// opsvcExtra holds the figures only opsvc has.
type opsvcExtra struct {
	ReloadS       []float64    `json:"reload_s"`             // edit → new pid of the changed unit
	ReloadReadyS  []float64    `json:"reload_ready_s"`       // edit → its unit.ready event received
	ReloadOthers  *int         `json:"reload_other_stopped"` // unit.stopped of units not edited
	ReloadEdited  int          `json:"reload_edited_stopped"`
	ReloadAt      []reloadRun  `json:"reload_at"`       // the same at other unit counts (-reload-n)
	StatusAt      []statusRun  `json:"status_at"`       // opsvc status --json and opsvc list (-status-n)
	LoopIdleMS    []float64    `json:"loop_idle_ms"`    // GET /v1/units round trips, quiet daemon
	LoopChurnMS   []float64    `json:"loop_churn_ms"`   // while children are being killed
	LoopStalledMS []float64    `json:"loop_stalled_ms"` // the same, plus one stalled subscriber
	StalledCut    *bool        `json:"stalled_cut_off"` // bus.lagged seen by the stalled subscriber
	StalledEvents int          `json:"churn_events"`    // events published during the stalled phase
	Registry      []regSample  `json:"registry"`
	StopVariants  []stopSample `json:"stop_variants"` // other ways to stop every unit
	Reexec        []reexecRun  `json:"reexec"`        // re-exec downtime (-reexec-n)
}

// regSample is one run of the registry benchmark.
type regSample struct {
	FS      string  `json:"fs"`
	Procs   int     `json:"procs"`
	Updates int     `json:"updates"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_sec"`
	Lost    int     `json:"lost"`
}

// ---------------------------------------------------------------- statistics

func median(xs []float64) (float64, bool) {
	if len(xs) == 0 {
		return 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// p95 is the nearest-rank 95th percentile.
func p95(xs []float64) (float64, bool) {
	if len(xs) == 0 {
		return 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(0.95*float64(len(s)))) - 1
	return s[max(0, i)], true
}

func maxOf(xs []float64) (float64, bool) {
	if len(xs) == 0 {
		return 0, false
	}
	return slices.Max(xs), true
}

// ---------------------------------------------------------------- values

// value is one figure with its unit; ok is false when it was not measured.
type value struct {
	v    float64
	unit string // s, ms, MiB, count, cpu-ms
	ok   bool
	note string // e.g. "1 run"
}

func (x value) String() string {
	if !x.ok {
		if x.note != "" {
			return x.note
		}
		return "—"
	}
	var s string
	switch x.unit {
	case "s":
		if x.v < 10 {
			s = fmt.Sprintf("%.3f s", x.v)
		} else {
			s = fmt.Sprintf("%.1f s", x.v)
		}
	case "ms":
		s = fmt.Sprintf("%.1f ms", x.v*1000)
	case "cpu-ms":
		s = fmt.Sprintf("%.1f ms", x.v*1000)
	case "MiB":
		s = fmt.Sprintf("%.1f MiB", x.v/1024)
	default:
		s = strconv.FormatFloat(x.v, 'f', -1, 64)
	}
	if x.note != "" {
		s += " (" + x.note + ")"
	}
	return s
}

func med(xs []float64, unit string) value {
	v, ok := median(xs)
	return value{v: v, unit: unit, ok: ok}
}

// row is one line of the main table: a label and how to get each peer's value.
type row struct {
	key   string // stable name, used by the ratio table and the targets
	label string
	get   func(p *peerResult) value
}

func (p *peerResult) cold(n int, f func(coldSample) *float64) value {
	var xs []float64
	for _, c := range p.Cold {
		if c.N == n {
			if v := f(c); v != nil {
				xs = append(xs, *v)
			}
		}
	}
	return med(xs, "s")
}

func (p *peerResult) mem(n int, restarted bool, f func(memSample) float64, unit string) value {
	var xs []float64
	for _, m := range p.Mem {
		if m.N == n && m.Restart == restarted {
			xs = append(xs, f(m))
		}
	}
	return med(xs, unit)
}

func (p *peerResult) stop(mode string, f func(stopSample) *float64, want int) value {
	var xs []float64
	for _, s := range p.Stop {
		if s.Mode == mode {
			if v := f(s); v != nil {
				xs = append(xs, *v)
			}
		}
	}
	v := med(xs, "s")
	if v.ok && len(xs) < want {
		v.note = fmt.Sprintf("%d run", len(xs))
		if len(xs) != 1 {
			v.note += "s"
		}
	}
	return v
}

func ptr(f float64) *float64 { return &f }

func rows(m meta) []row {
	var rs []row
	for _, n := range m.NList {
		rs = append(rs,
			row{fmt.Sprintf("cold%d", n), fmt.Sprintf("(a) cold start, N=%d: all N pids alive", n),
				func(p *peerResult) value { return p.cold(n, func(c coldSample) *float64 { return ptr(c.AllS) }) }},
			row{fmt.Sprintf("first%d", n), fmt.Sprintf("(a) cold start, N=%d: first child alive", n),
				func(p *peerResult) value { return p.cold(n, func(c coldSample) *float64 { return ptr(c.FirstS) }) }},
			row{fmt.Sprintf("status%d", n), fmt.Sprintf("(a) cold start, N=%d: own status shows N running", n),
				func(p *peerResult) value { return p.cold(n, func(c coldSample) *float64 { return c.StatusS }) }},
		)
	}
	rs = append(rs,
		row{"crash50", fmt.Sprintf("(b) crash → new pid alive, p50 (N=%d)", m.DetailN),
			func(p *peerResult) value { return med(p.Crash, "ms") }},
		row{"crash95", fmt.Sprintf("(b) crash → new pid alive, p95 (N=%d)", m.DetailN),
			func(p *peerResult) value { v, ok := p95(p.Crash); return value{v: v, unit: "ms", ok: ok} }},
		row{"recrash", "(b') re-crash < 1 s after the restart, median",
			func(p *peerResult) value { return med(p.Recrash, "ms") }},
	)
	for _, n := range m.NList {
		rs = append(rs,
			row{fmt.Sprintf("rss%d", n), fmt.Sprintf("(c) supervisor RSS sum, N=%d", n),
				func(p *peerResult) value {
					return p.mem(n, false, func(s memSample) float64 { return float64(s.RSSKB) }, "MiB")
				}},
			row{fmt.Sprintf("pss%d", n), fmt.Sprintf("(c) supervisor PSS sum, N=%d", n),
				func(p *peerResult) value {
					return p.mem(n, false, func(s memSample) float64 { return float64(s.PSSKB) }, "MiB")
				}},
			row{fmt.Sprintf("procs%d", n), fmt.Sprintf("(c) supervisor processes, N=%d", n),
				func(p *peerResult) value {
					return p.mem(n, false, func(s memSample) float64 { return float64(s.Procs) }, "count")
				}},
		)
	}
	if len(m.NList) > 0 {
		n := slices.Max(m.NList)
		rs = append(rs, row{fmt.Sprintf("pssr%d", n), fmt.Sprintf("(c') supervisor PSS sum, N=%d, after every child was killed and restarted once", n),
			func(p *peerResult) value {
				return p.mem(n, true, func(s memSample) float64 { return float64(s.PSSKB) }, "MiB")
			}})
	}
	want := m.StopReps
	rs = append(rs,
		row{"idle", fmt.Sprintf("(d) CPU used in %g s idle, N=%d", m.IdleS, m.DetailN),
			func(p *peerResult) value {
				i := p.idleAt(m.DetailN)
				if i == nil {
					return value{}
				}
				// in the window of this table (the scale run's may differ)
				return value{v: i.CPUS * m.IdleS / cmp.Or(i.WindowS, m.IdleS), unit: "cpu-ms", ok: m.IdleS > 0}
			}},
		row{"stopg", fmt.Sprintf("(e) stop-all, graceful (exit 0.2 s after TERM), N=%d: all gone", m.DetailN),
			func(p *peerResult) value {
				return p.stop("graceful", func(s stopSample) *float64 { return s.GoneS }, want)
			}},
		row{"stopgcmd", "(e) stop-all, graceful: stop command returned",
			func(p *peerResult) value {
				return p.stop("graceful", func(s stopSample) *float64 { return ptr(s.CmdS) }, want)
			}},
		row{"stopi", fmt.Sprintf("(e) stop-all, TERM ignored, %g s kill timeout, N=%d: all gone", m.StopTimeout, m.DetailN),
			func(p *peerResult) value {
				return p.stop("ignore", func(s stopSample) *float64 { return s.GoneS }, want)
			}},
		row{"stopicmd", "(e) stop-all, TERM ignored: stop command returned",
			func(p *peerResult) value {
				return p.stop("ignore", func(s stopSample) *float64 { return ptr(s.CmdS) }, want)
			}},
	)
	return rs
}

// ---------------------------------------------------------------- rendering

func (r *results) peer(name string) *peerResult {
	for _, p := range r.Peers {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// ran are the peers that were measured (not skipped), in order.
func (r *results) ran() []*peerResult {
	var out []*peerResult
	for _, p := range r.Peers {
		if p.Skipped == "" {
			out = append(out, p)
		}
	}
	return out
}

// ratio is a/b as "0.42×", or "—".
func ratio(a, b value) string {
	if !a.ok || !b.ok || b.v == 0 {
		return "—"
	}
	if r := a.v / b.v; r < 0.1 {
		return fmt.Sprintf("%.3f×", r)
	}
	return fmt.Sprintf("%.2f×", a.v/b.v)
}

// writeMarkdown renders the whole report.
func (r *results) writeMarkdown(w io.Writer) {
	ran := r.ran()
	rs := rows(r.Meta)

	fmt.Fprintf(w, "| measurement |")
	for _, p := range ran {
		fmt.Fprintf(w, " %s |", p.Name)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(ran)))
	for _, rw := range rs {
		cells := make([]string, len(ran))
		any := false
		for i, p := range ran {
			v := rw.get(p)
			cells[i] = v.String()
			any = any || v.ok
		}
		if any {
			fmt.Fprintf(w, "| %s | %s |\n", rw.label, strings.Join(cells, " | "))
		}
	}

	// Ratios: opsvc over each other column.
	ops := r.peer("opsvc")
	if ops != nil && ops.Skipped == "" {
		others := make([]*peerResult, 0, len(ran))
		for _, p := range ran {
			if p.Name != "opsvc" {
				others = append(others, p)
			}
		}
		if len(others) > 0 {
			fmt.Fprintf(w, "\nRatios (opsvc ÷ column; below 1 means opsvc is faster or smaller):\n\n| measurement |")
			for _, p := range others {
				fmt.Fprintf(w, " opsvc/%s |", p.Name)
			}
			fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(others)))
			for _, rw := range rs {
				// process counts, first-child instants and stop-command returns
				// (opsvc's stop command does not wait) are no comparison
				if strings.HasPrefix(rw.key, "procs") || strings.HasPrefix(rw.key, "first") || strings.HasSuffix(rw.key, "cmd") {
					continue
				}
				a := rw.get(ops)
				if !a.ok {
					continue
				}
				cells := make([]string, len(others))
				for i, p := range others {
					cells[i] = ratio(a, rw.get(p))
				}
				fmt.Fprintf(w, "| %s | %s |\n", rw.label, strings.Join(cells, " | "))
			}
		}
	}

	r.writeScale(w)
	r.writeOpsvcOnly(w)
	r.writeGoBench(w)
	if !r.Meta.StatusOnly && !r.Meta.ReexecOnly {
		r.writeTargets(w)
	}

	fmt.Fprintf(w, "\nVersions: ")
	var vs []string
	for _, p := range r.Peers {
		if p.Version != "" {
			vs = append(vs, p.Version)
		}
	}
	fmt.Fprintf(w, "%s.\n", strings.Join(vs, ", "))
	m := r.Meta
	fmt.Fprintf(w, "\nMachine: %d CPUs (%s), %s, kernel %s, %s; %s; work directory on %s; timing by %s.\n",
		m.NProc, m.CPU, m.MemTotal, m.Kernel, m.OS, m.GoVersion, m.WorkFS, m.Timing)
	if !m.StatusOnly && !m.ReexecOnly {
		fmt.Fprintf(w, "Medians of %d runs for (a) and (c), of %d runs for (e); %d kills for (b), %d for (b'). ",
			m.Reps, m.StopReps, m.CrashReps, m.RapidReps)
	}
	fmt.Fprintf(w, "Load average %s at the start, %s at the end; the run took %.0f s.\n", m.LoadStart, m.LoadEnd, m.DurationS)
	if m.Command != "" {
		fmt.Fprintf(w, "Command: `%s`", m.Command)
		if m.Commit != "" {
			fmt.Fprintf(w, " at %s", m.Commit)
		}
		fmt.Fprintf(w, ".\n")
	}
	var skipped []string
	for _, p := range r.Peers {
		if p.Skipped != "" {
			skipped = append(skipped, fmt.Sprintf("%s (%s)", p.Name, p.Skipped))
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "\nSkipped: %s.\n", strings.Join(skipped, "; "))
	}
	var probs []string
	for _, p := range r.Peers {
		for _, s := range p.Problems {
			probs = append(probs, p.Name+": "+s)
		}
	}
	probs = append(probs, r.Problems...)
	if len(probs) > 0 {
		fmt.Fprintf(w, "\nProblems seen during the run:\n")
		for _, s := range probs {
			fmt.Fprintf(w, "- %s\n", s)
		}
	}
}

func (r *results) writeOpsvcOnly(w io.Writer) {
	o := r.Opsvc
	ops := r.peer("opsvc")
	if ops == nil || ops.Skipped != "" {
		return
	}
	fmt.Fprintf(w, "\nopsvc only:\n\n| measurement | value |\n|---|---:|\n")
	line := func(label string, v value) {
		if v.ok || v.note != "" {
			fmt.Fprintf(w, "| %s | %s |\n", label, v)
		}
	}
	if len(o.ReloadS) > 0 {
		p50, _ := median(o.ReloadS)
		p, _ := p95(o.ReloadS)
		line(fmt.Sprintf("reload: edit → changed unit's new pid alive, p50 / p95 (%d edits, %d units)", len(o.ReloadS), r.Meta.DetailN),
			text(fmt.Sprintf("%.1f ms / %.1f ms", p50*1000, p*1000)))
	}
	if len(o.ReloadReadyS) > 0 {
		p50, _ := median(o.ReloadReadyS)
		p, _ := p95(o.ReloadReadyS)
		line("reload: edit → its unit.ready event received, p50 / p95", text(fmt.Sprintf("%.1f ms / %.1f ms", p50*1000, p*1000)))
	}
	if o.ReloadOthers != nil {
		line("reload: unit.stopped events of units not edited (must be 0)", text(strconv.Itoa(*o.ReloadOthers)))
	}
	for _, rr := range o.ReloadAt {
		p50, _ := median(rr.S)
		p, _ := p95(rr.S)
		others := "?"
		if rr.Others != nil {
			others = strconv.Itoa(*rr.Others)
		}
		line(fmt.Sprintf("reload: edit → changed unit's new pid alive, p50 / p95 (%d edits, %d units); other units stopped", len(rr.S), rr.N),
			text(fmt.Sprintf("%.1f ms / %.1f ms; %s", p50*1000, p*1000, others)))
	}
	for _, sr := range o.StatusAt {
		for _, x := range []struct {
			what string
			xs   []float64
		}{{"opsvc status --json", sr.StatusJSONS}, {"opsvc list", sr.ListS}} {
			if len(x.xs) == 0 {
				continue
			}
			p50, _ := median(x.xs)
			load := ""
			if sr.Load != "" {
				load = "; load " + sr.Load
			}
			line(fmt.Sprintf("`%s` with %d units running, p50 / max (%d runs%s)", x.what, sr.N, len(x.xs), load),
				text(fmt.Sprintf("%.1f ms / %.1f ms", p50*1000, slices.Max(x.xs)*1000)))
		}
	}
	lat := func(label string, xs []float64) {
		if len(xs) == 0 {
			return
		}
		a, _ := median(xs)
		b, _ := p95(xs)
		c, _ := maxOf(xs)
		line(label, text(fmt.Sprintf("%.2f / %.2f / %.2f ms", a, b, c)))
	}
	r.writeReexec(w)
	lat("loop latency: GET /v1/units round trip, quiet, p50 / p95 / max", o.LoopIdleMS)
	lat("loop latency: the same while children are killed (event churn)", o.LoopChurnMS)
	lat("loop latency: the same churn with one stalled events subscriber", o.LoopStalledMS)
	if o.StalledCut != nil {
		s := "no"
		if *o.StalledCut {
			s = "yes (bus.lagged)"
		}
		line(fmt.Sprintf("stalled subscriber cut off (%d events published meanwhile)", o.StalledEvents), text(s))
	}
	for _, g := range o.Registry {
		line(fmt.Sprintf("registry: locked updates/s, %d processes, state dir on %s (%d updates, %d lost)", g.Procs, g.FS, g.Updates, g.Lost),
			text(fmt.Sprintf("%.0f/s", g.PerSec)))
	}
	for _, v := range o.StopVariants {
		what := "graceful"
		if v.Mode == "ignore" {
			what = "TERM ignored"
		}
		x := text("not all gone")
		if v.GoneS != nil {
			x = text(fmt.Sprintf("%.3f s / %.3f s", *v.GoneS, v.CmdS))
		}
		if v.Note != "" {
			x.note += " (" + v.Note + ")"
		}
		line(fmt.Sprintf("stop-all, %s, by %s (N=%d): all gone / command returned", what, v.Via, r.Meta.DetailN), x)
	}
}

// text is a value that is only words.
func text(s string) value { return value{note: s} }

// goBenchRows are the Go benchmarks the report shows, with the unit to show.
var goBenchRows = []struct{ name, label string }{
	{"BenchmarkPlan/1000-steady", "supervisor.Plan, 1000 units, all running (nothing to do)"},
	{"BenchmarkPlan/1000-cold", "supervisor.Plan, 1000 units, none running (1000 starts)"},
	{"BenchmarkPlan/10000-steady", "supervisor.Plan, 10,000 units, all running, names sorted on the pass"},
	{"BenchmarkPlanKeptOrder", "supervisor.PlanNames, 10,000 units, all running, the loop's kept order"},
	{"BenchmarkRoundTrip", "worker: IPC command and reply over a socketpair"},
	{"BenchmarkFanout", "bus: one event published, delivered to 10 subscribers"},
	{"BenchmarkUpdate", "registry: one locked Update (100 chains), one process"},
	{"BenchmarkSessionStart", "orchestrator: one session of an agent that only prints its result"},
}

func (r *results) writeGoBench(w io.Writer) {
	if len(r.GoBench) == 0 {
		return
	}
	fmt.Fprintf(w, "\nGo benchmarks (`go test -run '^$' -bench . -benchmem`):\n\n| benchmark | ns/op | B/op | allocs/op | other |\n|---|---:|---:|---:|---|\n")
	for _, b := range goBenchRows {
		m, ok := r.GoBench[b.name]
		if !ok {
			fmt.Fprintf(w, "| %s (%s) | not run | | | |\n", b.name, b.label)
			continue
		}
		var other []string
		for u, v := range m {
			if u != "ns/op" && u != "B/op" && u != "allocs/op" {
				other = append(other, fmt.Sprintf("%s %s", fmtNum(v), u))
			}
		}
		slices.Sort(other)
		fmt.Fprintf(w, "| %s (%s) | %s | %s | %s | %s |\n", b.name, b.label, fmtNum(m["ns/op"]), fmtNum(m["B/op"]), fmtNum(m["allocs/op"]), strings.Join(other, ", "))
	}
}

func fmtNum(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// parseGoBench reads `go test -bench` output: name → unit → value. The
// -GOMAXPROCS suffix is dropped from names.
func parseGoBench(rd io.Reader) map[string]map[string]float64 {
	out := make(map[string]map[string]float64)
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := make(map[string]float64)
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m[f[i+1]] = v
		}
		out[name] = m
	}
	return out
}

// ---------------------------------------------------------------- targets

// target is one of the first release's targets, checked against this run.
type target struct {
	what     string
	measured string
	met      *bool // nil: could not be checked
}

func (r *results) targets() []target {
	var ts []target
	ops := r.peer("opsvc")
	if ops == nil || ops.Skipped != "" {
		return nil
	}
	rowByKey := make(map[string]row)
	for _, rw := range rows(r.Meta) {
		rowByKey[rw.key] = rw
	}
	get := func(p *peerResult, key string) value {
		rw, ok := rowByKey[key]
		if !ok || p == nil || p.Skipped != "" {
			return value{}
		}
		return rw.get(p)
	}
	peers := []string{"supervisord", "runit", "s6", "pm2"}
	best := func(key string) (value, string) {
		var b value
		name := ""
		for _, n := range peers {
			v := get(r.peer(n), key)
			if v.ok && (!b.ok || v.v < b.v) {
				b, name = v, n
			}
		}
		return b, name
	}
	check := func(what string, ok bool, have bool, measured string) {
		t := target{what: what, measured: measured}
		if have {
			t.met = &ok
		}
		ts = append(ts, t)
	}
	relative := func(key, what string, factor float64, against value, name string) {
		a := get(ops, key)
		have := a.ok && against.ok
		m := fmt.Sprintf("opsvc %s, %s %s: %s", a, name, against, ratio(a, against))
		if !against.ok {
			m = fmt.Sprintf("opsvc %s; no %s measured", a, cmp.Or(name, "peer"))
		}
		check(what, have && a.v <= factor*against.v, have, m)
	}
	absolute := func(key, what string, limit float64, strict bool) {
		a := get(ops, key)
		ok := a.ok && (a.v <= limit)
		if strict {
			ok = a.ok && a.v < limit
		}
		check(what, ok, a.ok, "opsvc "+a.String())
	}
	if slices.Contains(r.Meta.NList, 500) {
		b, n := best("cold500")
		relative("cold500", "cold start of 500 ≤ 0.5× the fastest peer", 0.5, b, n)
		relative("cold500", "cold start of 500 ≤ 1.2× the floor", 1.2, get(r.peer("floor"), "cold500"), "floor")
		absolute("pss500", "PSS at 500 ≤ 20 MiB", 20*1024, false)
	}
	b, n := best("crash50")
	relative("crash50", "crash → new pid p50 ≤ 0.8× the best peer", 0.8, b, n)
	{
		rc := get(ops, "recrash")
		cr := get(ops, "crash50")
		// A throttle holds a restart back ~1 s; no throttle means a re-crash
		// restarts about as fast as a first crash.
		ok := rc.ok && cr.ok && rc.v < 0.1 && rc.v <= 5*cr.v+0.005
		check("no re-crash throttle at restart_delay = \"0\" (re-crash restarts as fast as a crash)", ok, rc.ok && cr.ok,
			fmt.Sprintf("re-crash %s, crash %s", rc, cr))
	}
	if idle := ops.idleAt(r.Meta.DetailN); idle != nil && cmp.Or(idle.WindowS, r.Meta.IdleS) > 0 {
		per20 := idle.CPUS * 20 / cmp.Or(idle.WindowS, r.Meta.IdleS)
		check("idle CPU ≤ 1 ms per 20 s with 100 children", per20 <= 0.001, true,
			fmt.Sprintf("opsvc %.2f ms per 20 s", per20*1000))
	}
	absolute("stopg", "graceful stop-all ≤ 0.25 s", 0.25, false)
	absolute("stopi", "TERM-ignored stop-all ≤ 2.1 s", 2.1, false)
	if slices.Contains(r.Meta.NList, 100) {
		b, n := best("cold100")
		relative("cold100", "cold start of 100 ≤ 0.8× the fastest peer", 0.8, b, n)
		relative("cold100", "cold start of 100 ≤ 0.2× supervisord", 0.2, get(r.peer("supervisord"), "cold100"), "supervisord")
	}
	absolute("crash50", "restart p50 < 5 ms", 0.005, true)
	o := r.Opsvc
	if len(o.ReloadS) > 0 {
		p, _ := p95(o.ReloadS)
		others := -1
		if o.ReloadOthers != nil {
			others = *o.ReloadOthers
		}
		check("reload p95 < 150 ms, zero other units touched", p < 0.150 && others == 0, o.ReloadOthers != nil,
			fmt.Sprintf("p95 %.1f ms, %d other units stopped", p*1000, others))
	}
	if m, ok := r.GoBench["BenchmarkFanout"]; ok {
		v := m["events/s"]
		check("events/s to 10 subscribers ≥ 100k/s", v >= 100e3, v > 0, fmt.Sprintf("%.0f/s (BenchmarkFanout)", v))
	}
	for _, g := range o.Registry {
		if g.FS != "tmpfs" {
			check("registry updates/s across 4 processes ≥ 500/s (state dir on disk)", g.PerSec >= 500 && g.Lost == 0, true,
				fmt.Sprintf("%.0f/s on %s, %d lost", g.PerSec, g.FS, g.Lost))
		}
	}
	return ts
}

func (r *results) writeTargets(w io.Writer) {
	ts := r.targets()
	if len(ts) == 0 {
		return
	}
	fmt.Fprintf(w, "\nTargets of the first release:\n\n| target | measured | met |\n|---|---|---|\n")
	for _, t := range ts {
		m := "not measured"
		if t.met != nil {
			m = "no"
			if *t.met {
				m = "yes"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.what, t.measured, m)
	}
}
