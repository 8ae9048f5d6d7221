package parallel

import (
	"runtime"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestForCallsEachOnce checks every index is called exactly once, on one
// goroutine or several.
func TestForCallsEachOnce(t *testing.T) {
	for _, tc := range []struct{ n, per int }{{0, 1}, {1, 1}, {10, 64}, {1000, 8}, {1000, 0}} {
		calls := make([]atomic.Int32, tc.n)
		For(tc.n, tc.per, func(i int) { calls[i].Add(1) })
		for i := range calls {
			if c := calls[i].Load(); c != 1 {
				t.Fatalf("For(%d, %d): index %d called %d times", tc.n, tc.per, i, c)
			}
		}
	}
}

// TestForSpreads checks a large n runs on more than one goroutine when
// there is more than one CPU: every worker waits until two calls are under
// way at once.
func TestForSpreads(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one CPU: For calls fn on the caller's goroutine")
	}
	var inside atomic.Int32
	both := make(chan struct{})
	var closed atomic.Bool
	For(4, 2, func(i int) {
		if inside.Add(1) == 2 && closed.CompareAndSwap(false, true) {
			close(both)
		}
		<-both
	})
}
