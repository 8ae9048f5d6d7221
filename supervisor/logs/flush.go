package logs

import "time"

// Flush waits until every line written so far has been handed to the sinks
// (files written, journal entries sent), at most d; it reports whether they
// all were. Lines written meanwhile are waited for too.
func (l *Logs) Flush(d time.Duration) bool {
	deadline := time.Now().Add(d)
	pause := 100 * time.Microsecond
	for {
		l.mu.Lock()
		n := 0
		for _, sq := range l.sinks {
			n += sq.pending
		}
		l.mu.Unlock()
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause) // the sinks' writers take the lines; bounded by d
		pause = min(2*pause, 5*time.Millisecond)
	}
}
