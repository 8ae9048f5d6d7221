// Command faults drives a built opsvc binary through hostile input and faults
// (kill -9 of the daemon and of workers, a second daemon, hostile unit files,
// floods, a full disk, fd exhaustion) with real processes, files and sockets,
// and prints one table line per scenario: what was done, what held, the
// figure. It exits 1 if anything did not hold. It never edits the daemon:
// it only runs it. Linux only.
//
//	go run ./contrib/faults -bin bin/opsvc            # every scenario
//	go run ./contrib/faults -bin bin/opsvc -short     # the quick subset
//	go run ./contrib/faults -bin bin/opsvc -run 'fifo|uid'
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin/opsvc", "the opsvc binary to drive")
	flag.BoolVar(&o.short, "short", false, "run the quick subset (well under two minutes)")
	flag.StringVar(&o.run, "run", "", "run only the scenarios whose name matches this regular expression")
	flag.IntVar(&o.kills, "kills", 0, "kill -9 rounds of the daemon (default 20, 3 with -short)")
	flag.Int64Var(&o.seed, "seed", 0, "seed of the random kill moments (default: from the clock)")
	flag.StringVar(&o.out, "out", "", "also write the table (markdown) to this file")
	flag.BoolVar(&o.keep, "keep", false, "keep the scenarios' unit and state directories (their path is printed)")
	flag.Parse()
	os.Exit(run(o))
}

type options struct {
	bin   string
	short bool
	run   string
	kills int
	seed  int64
	out   string
	keep  bool
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "faults: "+format+"\n", args...)
}
