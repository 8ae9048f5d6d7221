// Command harness is `make bench`: it measures opsvc, a floor program and the
// installed peer supervisors (supervisord, runit, s6, PM2) side by side on
// this machine, and writes the table. It never kills a process it cannot
// name by pid and start time, and never leaves one running.
//
// run.sh builds and starts it; see contrib/bench/README.md for what each
// figure means.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxN bounds every child count.
const maxN = 10000

// options are the harness's settings; flags set them.
type options struct {
	ns          []int // child counts for cold start (a) and memory (c)
	reloadNs    []int // more unit counts for opsvc's reload latency
	statusNs    []int // unit counts for the time of opsvc's status commands
	reexecNs    []int // unit counts for opsvc's re-exec downtime
	reexecReps  int   // re-execs per unit count
	replaceReps int   // replacements (daemon --replace) per unit count
	detailN     int   // child count for crash (b), idle CPU (d), stop-all (e)
	reps        int   // cold-start/memory repetitions per N
	stopReps    int   // stop-all repetitions per child mode
	crashReps   int
	rapidReps   int
	reloadReps  int
	idle        time.Duration
	settle      time.Duration
	stopTimeout time.Duration
	longStop    time.Duration // a stop-all longer than this is not repeated
	budget      time.Duration // later work is skipped past this
	only        []string
	quick       bool
	poll        bool // poll /proc even where the proc connector works

	repo     string // repository root (for go test)
	opsvcBin string
	floorBin string
	regBin   string
	childSrc string
	pm2Bin   string
	goBench  string // output of `go test -bench` to take Go figures from
	out      string // results directory
	workBase string
	command  string // the command line to print with the results
	keepWork bool
	scale    scaleOpts
	// statusOnly measures only opsvc's status commands at each statusNs:
	// no cold starts of the other figures, no peers.
	statusOnly bool
	// reexecOnly measures only opsvc's re-exec (and --replace) downtime at
	// each reexecNs.
	reexecOnly bool
	reportOf   string // render the table and plot of this results file, measure nothing
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("harness", flag.ContinueOnError)
	ns := fs.String("n", "100,500", "child counts for cold start and memory, comma-separated")
	reloadNs := fs.String("reload-n", "1000", "more unit counts for opsvc's reload latency (besides -detail-n), comma-separated; empty for none")
	statusNs := fs.String("status-n", "1000", "unit counts for the time of `opsvc status --json` and `opsvc list`, comma-separated (10000 takes about a minute more); empty for none")
	reexecNs := fs.String("reexec-n", "100,1000", "unit counts for opsvc's re-exec downtime (and a full restart to compare), comma-separated; empty for none")
	fs.IntVar(&o.reexecReps, "reexec-reps", 5, "re-execs per unit count")
	fs.IntVar(&o.replaceReps, "replace-reps", 5, "replacements by opsvc daemon --replace per unit count, after the re-execs; 0 for none")
	fs.IntVar(&o.detailN, "detail-n", 100, "child count for crash, idle CPU and stop-all")
	fs.IntVar(&o.reps, "reps", 3, "cold-start/memory repetitions per N")
	fs.IntVar(&o.stopReps, "stop-reps", 3, "stop-all repetitions per child mode")
	fs.IntVar(&o.crashReps, "crash-reps", 20, "crash-restart kills")
	fs.IntVar(&o.rapidReps, "rapid-reps", 5, "re-crash kills (right after a restart)")
	fs.IntVar(&o.reloadReps, "reload-reps", 20, "opsvc unit-file edits for reload latency")
	fs.DurationVar(&o.idle, "idle", 20*time.Second, "idle CPU window")
	fs.DurationVar(&o.settle, "settle", time.Second, "pause after all children are up, before memory and idle CPU")
	fs.DurationVar(&o.stopTimeout, "stop-timeout", 2*time.Second, "TERM to KILL escalation given to every supervisor")
	fs.DurationVar(&o.longStop, "long-stop", 30*time.Second, "a stop-all repetition longer than this ends that mode's repetitions")
	fs.DurationVar(&o.budget, "budget", 13*time.Minute, "soft limit on the run; work not started by then is skipped and reported")
	only := fs.String("only", "", "supervisors to run, comma-separated (opsvc,floor,supervisord,runit,s6,pm2)")
	fs.BoolVar(&o.quick, "quick", false, "development run: N=100, 1 repetition, 5 kills, 5 s idle")
	fs.BoolVar(&o.poll, "poll", false, "time by polling /proc even where the process-events connector works")
	fs.StringVar(&o.repo, "repo", ".", "repository root")
	fs.StringVar(&o.opsvcBin, "opsvc", "bin/opsvc", "the opsvc binary")
	fs.StringVar(&o.floorBin, "floor", "", "the floor program (contrib/bench/floor, built)")
	fs.StringVar(&o.regBin, "regbench", "", "the registry benchmark program (contrib/bench/regbench, built)")
	fs.StringVar(&o.childSrc, "child", "contrib/bench/child.sh", "the child program")
	fs.StringVar(&o.pm2Bin, "pm2", "contrib/bench/.deps/node_modules/.bin/pm2", "the pm2 command (PATH is searched when this is absent)")
	fs.StringVar(&o.goBench, "gobench", "", "output of go test -bench to take the Go figures from (missing ones are run)")
	fs.StringVar(&o.out, "out", "contrib/bench/results", "directory for latest.md and latest.json")
	fs.StringVar(&o.workBase, "workdir-base", "", "where the work directory is made (default: /dev/shm when writable, else the temp dir)")
	fs.StringVar(&o.command, "command", "", "the command line to print with the results")
	fs.BoolVar(&o.keepWork, "keep-work", false, "keep the work directory")
	scaleFlags(fs, &o.scale)
	fs.BoolVar(&o.statusOnly, "status-only", false, "measure only opsvc status --json and opsvc list at each -status-n, nothing else (give -out another directory to keep results/latest.* as they are)")
	fs.BoolVar(&o.reexecOnly, "reexec-only", false, "measure only opsvc's re-exec and --replace downtime at each -reexec-n, nothing else (give -out another directory to keep results/latest.* as they are)")
	fs.StringVar(&o.reportOf, "report", "", "render latest.md and the plot again from this latest.json into -out; measure nothing")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see -h)", fs.Arg(0))
	}
	for f := range strings.SplitSeq(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxN {
			return o, fmt.Errorf("-n: %q is not a child count in 1..%d", f, maxN)
		}
		o.ns = append(o.ns, n)
	}
	for _, x := range []struct {
		flag string
		v    string
		out  *[]int
	}{{"reload-n", *reloadNs, &o.reloadNs}, {"status-n", *statusNs, &o.statusNs}, {"reexec-n", *reexecNs, &o.reexecNs}} {
		for f := range strings.SplitSeq(x.v, ",") {
			if strings.TrimSpace(f) == "" {
				continue
			}
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > maxN {
				return o, fmt.Errorf("-%s: %q is not a unit count in 1..%d", x.flag, f, maxN)
			}
			*x.out = append(*x.out, n)
		}
	}
	if *only != "" {
		o.only = strings.Split(*only, ",")
	}
	explicit := map[string]bool{}
	if o.quick {
		o.ns, o.reps, o.stopReps, o.crashReps, o.rapidReps, o.reloadReps = []int{100}, 1, 1, 5, 2, 5
		fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
		if !explicit["reload-n"] {
			o.reloadNs = nil
		}
		if !explicit["status-n"] {
			o.statusNs = nil
		}
		if !explicit["reexec-n"] {
			o.reexecNs = []int{100}
		}
		if !explicit["reexec-reps"] {
			o.reexecReps = 2
		}
		if !explicit["replace-reps"] {
			o.replaceReps = 2
		}
		o.idle = 5 * time.Second
	}
	o.applyScale(fs)
	if o.detailN < 1 || o.reps < 1 || o.stopReps < 1 || o.crashReps < 1 || o.rapidReps < 0 || o.reloadReps < 0 || o.reexecReps < 1 || o.replaceReps < 0 {
		return o, fmt.Errorf("counts must be positive")
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		os.Exit(2)
	}
	if o.reportOf != "" {
		if err := report(o.reportOf, o.out); err != nil {
			fmt.Fprintf(os.Stderr, "harness: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		os.Exit(1)
	}
}
