// Command regbench measures locked registry updates across processes for
// `make bench`: it seeds a registry (100 chains of 5 sessions), starts -procs
// copies of itself that each make -n supervisor/registry Store.Update calls
// on a chain of their own, and prints one JSON object: updates, seconds,
// updates per second and updates lost. It only ever touches -dir.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/opsvc/opsvc/supervisor/registry"
)

// workerEnv, when set, makes the process one of the updating workers.
const workerEnv = "OPSVC_REGBENCH_WORKER"

// Result is what regbench prints.
type Result struct {
	Procs   int     `json:"procs"`
	Updates int     `json:"updates"`
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_sec"`
	Lost    int     `json:"lost"`
}

// span is what a worker prints: when its first update began and its last ended.
type span struct {
	Start int64 `json:"start_ns"`
	End   int64 `json:"end_ns"`
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "regbench: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("regbench", flag.ContinueOnError)
	dir := fs.String("dir", "", "state directory for the registry (made if missing)")
	procs := fs.Int("procs", 4, "updating processes")
	n := fs.Int("n", 250, "updates per process")
	chain := fs.String("chain", "", "the chain a worker updates (set by the parent)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *procs < 1 || *n < 1 {
		return errors.New("-dir, and positive -procs and -n, are required")
	}
	st, err := registry.Open(*dir, registry.Options{})
	if err != nil {
		return err
	}
	if os.Getenv(workerEnv) != "" {
		return work(st, *chain, *n, stdin, stdout)
	}
	res, err := parent(st, *dir, *procs, *n)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// work waits for the parent's go (a line on stdin), then updates its chain's
// first session n times, one turn more each time.
func work(st *registry.Store, chain string, n int, stdin io.Reader, stdout io.Writer) error {
	if _, err := bufio.NewReader(stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("wait for the start: %w", err)
	}
	var sp span
	sp.Start = time.Now().UnixNano()
	for range n {
		err := st.Update(func(r *registry.Registry) error {
			c := r.Find(chain)
			if c == nil || len(c.Sessions) == 0 {
				return fmt.Errorf("chain %s is missing", chain)
			}
			s := c.Sessions[0]
			s.Turns++
			return r.RecordSession(chain, s, time.Now())
		})
		if err != nil {
			return err
		}
	}
	sp.End = time.Now().UnixNano()
	return json.NewEncoder(stdout).Encode(sp)
}

// parent seeds the registry, runs the workers together and checks that every
// update is there.
func parent(st *registry.Store, dir string, procs, n int) (Result, error) {
	res := Result{Procs: procs, Updates: procs * n}
	var ids []string
	err := st.Update(func(r *registry.Registry) error {
		now := time.Now()
		for i := range 100 + procs {
			c := r.CreateChain(fmt.Sprintf("orch@%d", i%10), "Work through ROADMAP.md", "/srv/repos/project",
				registry.ChainConfig{Model: "sonnet", MaxTurns: 30, MaxContinuations: 5, MaxBudgetUSD: 5}, "", now)
			sessions := 5
			if i >= 100 {
				ids = append(ids, c.ID)
				sessions = 1
			}
			for j := range sessions {
				s := registry.Session{Index: j, SessionID: fmt.Sprintf("sess-%d-%d", i, j), Status: registry.SessionComplete,
					CostUSD: 0.42, InputTokens: 12000, OutputTokens: 3400, DurationMS: 95000,
					HandoffFile: "/srv/repos/project/.opsvc/handoff.md", StartedAt: now, EndedAt: now}
				if err := r.RecordSession(c.ID, s, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("seed the registry: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return res, err
	}
	type worker struct {
		cmd *exec.Cmd
		in  io.WriteCloser
		out *bufio.Reader
	}
	ws := make([]worker, 0, procs)
	defer func() {
		for _, w := range ws {
			w.in.Close()
			if w.cmd.ProcessState == nil {
				w.cmd.Process.Kill()
				w.cmd.Wait()
			}
		}
	}()
	for k := range procs {
		cmd := exec.Command(exe, "-dir", dir, "-procs", "1", "-n", strconv.Itoa(n), "-chain", ids[k])
		cmd.Env = append(os.Environ(), workerEnv+"="+strconv.Itoa(k+1))
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return res, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return res, err
		}
		if err := cmd.Start(); err != nil {
			return res, fmt.Errorf("start worker: %w", err)
		}
		ws = append(ws, worker{cmd: cmd, in: in, out: bufio.NewReader(out)})
	}
	for _, w := range ws {
		if _, err := io.WriteString(w.in, "go\n"); err != nil {
			return res, fmt.Errorf("start worker: %w", err)
		}
	}
	var first, last int64
	for k, w := range ws {
		line, rerr := w.out.ReadBytes('\n')
		werr := w.cmd.Wait()
		if werr != nil {
			return res, fmt.Errorf("worker %d: %w", k+1, werr)
		}
		var sp span
		if err := json.Unmarshal(line, &sp); err != nil {
			return res, fmt.Errorf("worker %d: %v %v", k+1, err, rerr)
		}
		if first == 0 || sp.Start < first {
			first = sp.Start
		}
		last = max(last, sp.End)
	}
	res.Seconds = float64(last-first) / 1e9
	if res.Seconds > 0 {
		res.PerSec = float64(res.Updates) / res.Seconds
	}
	err = st.View(func(r *registry.Registry) error {
		for _, id := range ids {
			c := r.Find(id)
			if c == nil || len(c.Sessions) == 0 {
				res.Lost += n
				continue
			}
			res.Lost += n - c.Sessions[0].Turns
		}
		return nil
	})
	return res, err
}
