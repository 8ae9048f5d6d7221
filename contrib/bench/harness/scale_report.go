package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// idleAt is the peer's idle CPU sample at n: from the scale run, else the
// detail instance's.
func (p *peerResult) idleAt(n int) *idleSample {
	for _, s := range p.Scale {
		if s.N == n && s.IdleS > 0 {
			return &idleSample{N: n, CPUS: s.IdleCPUS, WindowS: s.IdleS}
		}
	}
	if p.Idle != nil && p.Idle.N == n {
		return p.Idle
	}
	return nil
}

func (p *peerResult) scaleAt(n int) *scaleSample {
	for i := range p.Scale {
		if p.Scale[i].N == n {
			return &p.Scale[i]
		}
	}
	return nil
}

// scaleNs are the N of the scale run, ascending; nil when it did not run.
func (r *results) scaleNs() []int {
	var ns []int
	for _, p := range r.Peers {
		for _, s := range p.Scale {
			if !slices.Contains(ns, s.N) {
				ns = append(ns, s.N)
			}
		}
	}
	if len(ns) == 0 {
		return nil
	}
	// an N where nobody got as far as the scale figures still has a row
	for _, n := range r.Meta.NList {
		if !slices.Contains(ns, n) {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns
}

// pssPerUnitKB is the PSS the peer adds per child between the smallest N
// measured and n (KiB); false without both figures.
func (p *peerResult) pssPerUnitKB(n int, ns []int) (float64, bool) {
	if len(ns) == 0 || n <= ns[0] {
		return 0, false
	}
	lo := p.mem(ns[0], false, func(s memSample) float64 { return float64(s.PSSKB) }, "")
	hi := p.mem(n, false, func(s memSample) float64 { return float64(s.PSSKB) }, "")
	if !lo.ok || !hi.ok {
		return 0, false
	}
	return (hi.v - lo.v) / float64(n-ns[0]), true
}

// notRun says why the peer has no figure at n.
func (p *peerResult) notRun(n int) string {
	if slices.Contains(p.NotRun, n) {
		return "not run"
	}
	for _, pr := range p.Problems {
		if strings.Contains(pr, fmt.Sprintf("n=%d: did not finish", n)) {
			return "did not finish"
		}
	}
	return "—"
}

// writeScale writes the scale run's table and its goals.
func (r *results) writeScale(w io.Writer) {
	ns := r.scaleNs()
	if len(ns) == 0 {
		return
	}
	ran := r.ran()
	fmt.Fprintf(w, "\nScale (every supervisor at each N where it ran; opsvc's units have `stderr = \"stdout\"` where two pipes per unit would not fit the open-files limit):\n\n| measurement |")
	for _, p := range ran {
		fmt.Fprintf(w, " %s |", p.Name)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---:|", len(ran)))
	line := func(label string, cell func(p *peerResult) string) {
		cells := make([]string, len(ran))
		any := false
		for i, p := range ran {
			cells[i] = cell(p)
			any = any || (cells[i] != "—" && cells[i] != "not run")
		}
		if any {
			fmt.Fprintf(w, "| %s | %s |\n", label, strings.Join(cells, " | "))
		}
	}
	for _, n := range ns {
		line(fmt.Sprintf("cold start, N=%d: all N pids alive", n), func(p *peerResult) string {
			if v := p.cold(n, func(c coldSample) *float64 { return ptr(c.AllS) }); v.ok {
				return v.String()
			}
			return p.notRun(n)
		})
	}
	for _, n := range ns {
		line(fmt.Sprintf("PSS sum, N=%d", n), func(p *peerResult) string {
			if v := p.mem(n, false, func(s memSample) float64 { return float64(s.PSSKB) }, "MiB"); v.ok {
				return v.String()
			}
			return p.notRun(n)
		})
	}
	for _, n := range ns[1:] {
		line(fmt.Sprintf("PSS per child, from N=%d to N=%d", ns[0], n), func(p *peerResult) string {
			if v, ok := p.pssPerUnitKB(n, ns); ok {
				return fmt.Sprintf("%.1f KiB", v)
			}
			return p.notRun(n)
		})
	}
	for _, n := range ns {
		line(fmt.Sprintf("idle CPU, N=%d", n), func(p *peerResult) string {
			if s := p.idleAt(n); s != nil && s.WindowS > 0 {
				return fmt.Sprintf("%.2f ms/s", s.CPUS*1000/s.WindowS)
			}
			return p.notRun(n)
		})
	}
	for _, n := range ns {
		line(fmt.Sprintf("crash → new pid alive, p50, N=%d", n), func(p *peerResult) string {
			if s := p.scaleAt(n); s != nil && len(s.CrashS) > 0 {
				return med(s.CrashS, "ms").String()
			}
			return p.notRun(n)
		})
	}
	ops := r.peer("opsvc")
	if ops == nil || len(ops.Scale) == 0 {
		return
	}
	fmt.Fprintf(w, "\nopsvc at each N:\n\n| N | `status --json` p50 / max | `list` p50 / max | reload p50 / p95 (other units stopped) | loop p99 / max, GET /v1/units/NAME with 1%% crash-looping (restarts in the window) |\n|---:|---:|---:|---:|---:|\n")
	for _, s := range ops.Scale {
		pm := func(xs []float64) string {
			if len(xs) == 0 {
				return "—"
			}
			a, _ := median(xs)
			return fmt.Sprintf("%.1f / %.1f ms", a*1000, slices.Max(xs)*1000)
		}
		reload := "—"
		if len(s.ReloadS) > 0 {
			a, _ := median(s.ReloadS)
			b, _ := p95(s.ReloadS)
			reload = fmt.Sprintf("%.1f / %.1f ms", a*1000, b*1000)
			if s.ReloadOther != nil {
				reload += fmt.Sprintf(" (%d)", *s.ReloadOther)
			}
		}
		loop := "—"
		if len(s.LoopMS) > 0 {
			a, _ := p99(s.LoopMS)
			b, _ := maxOf(s.LoopMS)
			loop = fmt.Sprintf("%.2f / %.2f ms, %d units (%d)", a, b, s.CrashLoop, s.LoopRestarts)
		}
		shared := ""
		if s.SharedOut {
			shared = " (stderr = \"stdout\")"
		}
		fmt.Fprintf(w, "| %d%s | %s | %s | %s | %s |\n", s.N, shared, pm(s.StatusJSONS), pm(s.ListS), reload, loop)
	}
	r.writeScaleGoals(w, ns)
}

// writeScaleGoals checks the large-install goals at the largest N measured.
func (r *results) writeScaleGoals(w io.Writer, ns []int) {
	ops, floor := r.peer("opsvc"), r.peer("floor")
	top := ns[len(ns)-1]
	for i := len(ns) - 1; i >= 0 && ops.scaleAt(top) == nil; i-- {
		top = ns[i] // the largest N opsvc got through
	}
	type goal struct{ what, measured, met string }
	var gs []goal
	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "no"
	}
	add := func(what, measured string, ok, have bool) {
		m := "not measured"
		if have {
			m = yes(ok)
		}
		gs = append(gs, goal{what, measured, m})
	}
	for _, n := range r.Meta.NList {
		if n < 500 {
			continue
		}
		a := ops.cold(n, func(c coldSample) *float64 { return ptr(c.AllS) })
		var b value
		if floor != nil {
			b = floor.cold(n, func(c coldSample) *float64 { return ptr(c.AllS) })
		}
		m := fmt.Sprintf("opsvc %s, floor %s: %s", a, b, ratio(a, b))
		if !a.ok || !b.ok {
			m = fmt.Sprintf("opsvc %s, floor %s", ops.notRun(n), floor.notRun(n))
		}
		add(fmt.Sprintf("cold start of %d ≤ 1.1× the floor", n), m, a.ok && b.ok && a.v <= 1.1*b.v, a.ok && b.ok)
	}
	for _, x := range []struct {
		n     int
		limit float64
	}{{ns[0], 0.030}, {top, 0.050}} {
		s := ops.scaleAt(x.n)
		if s == nil || len(s.ReloadS) == 0 {
			continue
		}
		p, _ := p95(s.ReloadS)
		add(fmt.Sprintf("reload p95 ≤ %.0f ms at %d units", x.limit*1000, x.n), fmt.Sprintf("%.1f ms", p*1000), p <= x.limit, true)
	}
	if s := ops.scaleAt(top); s != nil {
		a, okA := median(s.StatusJSONS)
		add(fmt.Sprintf("`opsvc status --json` of %d units ≤ 150 ms", top), fmt.Sprintf("p50 %.1f ms", a*1000), a <= 0.150, okA)
		b, okB := median(s.ListS)
		add(fmt.Sprintf("`opsvc list` of %d units ≤ 100 ms", top), fmt.Sprintf("p50 %.1f ms", b*1000), b <= 0.100, okB)
		if v, ok := ops.pssPerUnitKB(top, ns); ok {
			add(fmt.Sprintf("PSS per unit ≤ 25 KiB at %d", top), fmt.Sprintf("%.1f KiB", v), v <= 25, true)
		}
		if i := ops.idleAt(top); i != nil && i.WindowS > 0 {
			v := i.CPUS * 1000 / i.WindowS
			add(fmt.Sprintf("idle CPU ≤ 1 ms/s with %d idle units", top), fmt.Sprintf("%.2f ms/s", v), v <= 1, true)
		}
		c, okC := median(s.CrashS)
		add(fmt.Sprintf("crash → restart p50 ≤ 3 ms at %d units", top), fmt.Sprintf("%.1f ms", c*1000), c <= 0.003, okC)
		l, okL := p99(s.LoopMS)
		add(fmt.Sprintf("loop latency p99 ≤ 20 ms, %d units, 1%% crash-looping", top), fmt.Sprintf("%.2f ms", l), l <= 20, okL)
	}
	if m, ok := r.GoBench["BenchmarkFanout"]; ok {
		v := m["events/s"]
		add("events/s to 10 subscribers ≥ 200k/s", fmt.Sprintf("%.0f/s (BenchmarkFanout)", v), v >= 200e3, v > 0)
	}
	fmt.Fprintf(w, "\nLarge-install goals:\n\n| goal | measured | met |\n|---|---|---|\n")
	for _, g := range gs {
		fmt.Fprintf(w, "| %s | %s | %s |\n", g.what, g.measured, g.met)
	}
}

// plotScale draws the cost curves of the scale run into dir/scale.png with
// gnuplot: cold start and PSS against N, log scales, one line per
// supervisor. Without gnuplot it says so and draws nothing.
func (r *results) plotScale(dir string) error {
	ns := r.scaleNs()
	if len(ns) < 2 {
		return nil
	}
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		return fmt.Errorf("gnuplot not found: no plot (Debian: apt-get install gnuplot-nox)")
	}
	var data strings.Builder
	var series []string
	for _, p := range r.ran() {
		var pts []string
		for _, n := range r.Meta.NList {
			c := p.cold(n, func(c coldSample) *float64 { return ptr(c.AllS) })
			m := p.mem(n, false, func(s memSample) float64 { return float64(s.PSSKB) }, "")
			if !c.ok || !m.ok {
				continue
			}
			pts = append(pts, fmt.Sprintf("%d %g %g", n, c.v, m.v/1024))
		}
		if len(pts) == 0 {
			continue
		}
		fmt.Fprintf(&data, "# %s\n%s\n\n\n", p.Name, strings.Join(pts, "\n"))
		series = append(series, p.Name)
	}
	if len(series) == 0 {
		return nil
	}
	datPath := filepath.Join(dir, "scale.dat")
	if err := os.WriteFile(datPath, []byte(data.String()), 0o644); err != nil {
		return err
	}
	var cold, mem []string
	for i, name := range series {
		cold = append(cold, fmt.Sprintf("'scale.dat' index %d using 1:2 with linespoints lw 2 title '%s'", i, name))
		mem = append(mem, fmt.Sprintf("'scale.dat' index %d using 1:3 with linespoints lw 2 title '%s'", i, name))
	}
	script := fmt.Sprintf(`set terminal pngcairo size 1400,560 font ",11"
set output 'scale.png'
set multiplot layout 1,2 title "Cost against N (%s, %d CPUs)"
set logscale xy
set grid
set key top left
set xlabel "children (N)"
set xrange [%d:%d]
set ylabel "cold start: all N alive (s)"
set title "cold start"
plot %s
set ylabel "supervisor PSS (MiB)"
set title "memory"
plot %s
unset multiplot
`, r.Meta.Date[:10], r.Meta.NProc, ns[0]*8/10, ns[len(ns)-1]*12/10, strings.Join(cold, ", "), strings.Join(mem, ", "))
	cmd := exec.Command(gp)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// report renders the table (and the plot) again from a results file.
func report(path, out string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var r results
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	var md strings.Builder
	r.writeMarkdown(&md)
	os.Stdout.WriteString(md.String())
	if err := os.WriteFile(filepath.Join(out, "latest.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	return r.plotScale(out)
}
