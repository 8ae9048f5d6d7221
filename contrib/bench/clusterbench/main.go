// Command clusterbench measures the session leases of a fleet on etcd: how
// many sessions are granted per second fleet-wide, and how long a grant and a
// release take (p50, p99), with -hosts daemons of -orchs orchestrators each
// asking at once under max_concurrent_sessions = -max.
//
//	go run ./contrib/bench/clusterbench -etcd http://127.0.0.1:2379,... -for 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opsvc/opsvc/cluster"
	"github.com/opsvc/opsvc/config"
)

// Result is what one run measured.
type Result struct {
	Hosts, Orchs, Max int
	Seconds           float64
	Granted           int
	GrantsPerSecond   float64
	AcquireP50MS      float64
	AcquireP99MS      float64
	ReleaseP50MS      float64
	ReleaseP99MS      float64
}

func main() {
	endpoints := flag.String("etcd", "http://127.0.0.1:2379", "etcd client URLs, comma-separated")
	hosts := flag.Int("hosts", 4, "daemons (each its own etcd client)")
	orchs := flag.Int("orchs", 3, "orchestrators per daemon")
	maxc := flag.Int("max", 2, "max_concurrent_sessions")
	dur := flag.Duration("for", 10*time.Second, "how long to run")
	flag.Parse()
	r, err := run(strings.Split(*endpoints, ","), *hosts, *orchs, *maxc, *dur)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

func run(endpoints []string, hosts, orchs, maxc int, dur time.Duration) (Result, error) {
	s := config.DefaultSettings()
	s.Cluster.Etcd = endpoints
	s.Cluster.Prefix = fmt.Sprintf("/clusterbench-%d", time.Now().UnixNano())
	o := s.Orchestrator
	o.MaxConcurrentSessions, o.MaxSessionsPerMinute, o.GlobalBudgetUSD, o.PerWorkerBudgetUSD = maxc, 0, 0, 0
	var (
		mu       sync.Mutex
		acq, rel []time.Duration
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(dur)
	ctx := context.Background()
	for h := range hosts {
		s.Cluster.Node = fmt.Sprint("bench-", h)
		c, err := cluster.Dial(ctx, s.Cluster, cluster.Options{})
		if err != nil {
			return Result{}, err
		}
		defer c.Close()
		l := cluster.NewLeases(c)
		for i := range orchs {
			wg.Go(func() {
				unit := fmt.Sprintf("orch-%d", i)
				for time.Now().Before(deadline) {
					t0 := time.Now()
					g := l.Acquire(ctx, o, unit, "")
					if !g.Granted {
						time.Sleep(time.Duration(min(g.RetryMS, 20)) * time.Millisecond)
						continue
					}
					t1 := time.Now()
					if err := l.Release(ctx, unit, g.LeaseID, 0.001); err != nil {
						fmt.Fprintln(os.Stderr, "clusterbench:", err)
					}
					t2 := time.Now()
					mu.Lock()
					acq, rel = append(acq, t1.Sub(t0)), append(rel, t2.Sub(t1))
					mu.Unlock()
				}
			})
		}
	}
	start := time.Now()
	wg.Wait()
	secs := time.Since(start).Seconds()
	r := Result{Hosts: hosts, Orchs: orchs, Max: maxc, Seconds: secs, Granted: len(acq), GrantsPerSecond: float64(len(acq)) / secs}
	r.AcquireP50MS, r.AcquireP99MS = pct(acq, 50), pct(acq, 99)
	r.ReleaseP50MS, r.ReleaseP99MS = pct(rel, 50), pct(rel, 99)
	return r, nil
}

func pct(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[(len(d)-1)*p/100].Microseconds()) / 1000
}
