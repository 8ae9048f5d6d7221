// Package parallel spreads independent calls over the CPUs.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls fn(i) for every i in [0, n), on as many goroutines as there are
// CPUs and blocks of per calls (one when that is fewer than two, on the
// caller's), and returns once every call has returned. The calls must not
// depend on one another.
func For(n, per int, fn func(i int)) {
	workers := 0
	if per > 0 {
		workers = min(runtime.GOMAXPROCS(0), n/per)
	}
	if workers < 2 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}
