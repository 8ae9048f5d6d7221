package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// scenario is one fault: it reports what held through r and returns nothing;
// any r.fail marks it failed, r.skip marks it skipped with a reason.
type scenario struct {
	name  string
	short bool // in the -short subset
	fn    func(ctx context.Context, s *suite, r *result)
}

// result is one table line.
type result struct {
	name    string
	did     string   // what was done
	held    []string // the figures
	failed  []string // what did not hold
	skipped string
	took    time.Duration
}

func (r *result) figure(format string, args ...any) {
	r.held = append(r.held, fmt.Sprintf(format, args...))
}
func (r *result) fail(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}
func (r *result) skip(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }

// check records what held as a figure, and what did not as a failure.
func (r *result) check(ok bool, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if ok {
		r.held = append(r.held, msg)
	} else {
		r.failed = append(r.failed, msg)
	}
}

func (r *result) verdict() string {
	switch {
	case r.skipped != "":
		return "SKIP"
	case len(r.failed) > 0:
		return "FAIL"
	}
	return "PASS"
}

// suite holds what every scenario shares.
type suite struct {
	opt  options
	bin  string
	root string // a temp dir holding one dir per scenario
}

func scenarios() []scenario {
	return []scenario{
		{"kill9-daemon", true, scenarioKillDaemon},
		{"kill9-worker", true, scenarioKillWorker},
		{"second-daemon", true, scenarioSecondDaemon},
		{"hostile-unit", true, scenarioHostileUnit},
		{"notify-flood", true, scenarioNotifyFlood},
		{"event-size", true, scenarioEventSize},
		{"output-flood", true, scenarioOutputFlood},
		{"fifo-env", true, scenarioFIFO},
		{"uid-range", true, scenarioUID},
		{"disk-full", false, scenarioDiskFull},
		{"fd-exhaustion", false, scenarioFDs},
		{"bad-requests", true, scenarioBadRequests},
	}
}

func run(o options) int {
	bin, err := filepath.Abs(o.bin)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		logf("the opsvc binary: %v (run make build, or pass -bin)", err)
		return 2
	}
	var re *regexp.Regexp
	if o.run != "" {
		if re, err = regexp.Compile(o.run); err != nil {
			logf("-run: %v", err)
			return 2
		}
	}
	if o.kills == 0 {
		o.kills = 20
		if o.short {
			o.kills = 3
		}
	}
	if o.seed == 0 {
		o.seed = time.Now().UnixNano()
	}
	root, err := os.MkdirTemp("", "opsvc-faults-")
	if err != nil {
		logf("temp dir: %v", err)
		return 2
	}
	if o.keep {
		logf("keeping the scenarios' files in %s", root)
	} else {
		defer os.RemoveAll(root)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &suite{opt: o, bin: bin, root: root}
	logf("driving %s, kill seed %d", bin, o.seed)

	var results []*result
	start := time.Now()
	for _, sc := range scenarios() {
		if o.short && !sc.short {
			continue
		}
		if re != nil && !re.MatchString(sc.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		r := &result{name: sc.name}
		logf("%s ...", sc.name)
		t0 := time.Now()
		func() {
			defer func() {
				if p := recover(); p != nil {
					r.fail("panic: %v", p)
				}
			}()
			sc.fn(ctx, s, r)
		}()
		r.took = time.Since(t0)
		logf("%s: %s in %.1fs", sc.name, r.verdict(), r.took.Seconds())
		results = append(results, r)
	}
	// The scenarios' directories are temporary: the table names them by their place only.
	table := strings.ReplaceAll(render(results, time.Since(start)), root, "TMP")
	fmt.Print(table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(table), 0o644); err != nil {
			logf("-out: %v", err)
		}
	}
	for _, r := range results {
		if r.verdict() == "FAIL" {
			return 1
		}
	}
	if ctx.Err() != nil {
		return 1
	}
	return 0
}

func render(results []*result, total time.Duration) string {
	var b strings.Builder
	b.WriteString("| result | scenario | what was done | what held (the figures) | time |\n")
	b.WriteString("|---|---|---|---|---|\n")
	pass, fail, skip := 0, 0, 0
	for _, r := range results {
		held := strings.Join(r.held, ", ")
		switch r.verdict() {
		case "SKIP":
			skip++
			held = "skipped: " + r.skipped
		case "FAIL":
			fail++
			held = strings.TrimPrefix(held+"; **NOT HELD:** "+strings.Join(r.failed, "; "), "; ")
		default:
			pass++
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.1f s |\n", r.verdict(), r.name, cell(r.did), cell(held), r.took.Seconds())
	}
	fmt.Fprintf(&b, "\n%d passed, %d failed, %d skipped in %.0f s\n", pass, fail, skip, total.Seconds())
	return b.String()
}

func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
