package supervisor

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/opsvc/opsvc/supervisor/logs"
	"github.com/opsvc/opsvc/unit"
)

type logsLine = logs.Line

func (s *Supervisor) followLogs(name string) (<-chan logs.Line, func()) {
	return s.opts.Logs.Follow(name)
}

// lineWriter turns each write (one line of a worker's output, as the runner
// copies them) into a log line, with the unit's current journald fields.
type lineWriter struct {
	logs   *logs.Logs
	unit   string
	stream string
	fields *atomic.Pointer[map[string]string]
	now    func() time.Time
}

func (w *lineWriter) Write(p []byte) (int, error) {
	text := strings.TrimRight(string(p), "\r\n")
	var f map[string]string
	if m := w.fields.Load(); m != nil {
		f = *m
	}
	w.logs.Write(logs.Line{Time: w.now(), Unit: w.unit, Stream: w.stream, Text: text, Fields: f})
	return len(p), nil
}

// orchestratorConfig fills what a unit's [orchestrator] table leaves unset
// from the daemon's [orchestrator] settings.
func (s *Supervisor) orchestratorConfig(o *unit.Orchestrator) unit.Orchestrator {
	var c unit.Orchestrator
	if o != nil {
		c = *o
	}
	d := s.opts.Settings.Orchestrator
	if c.Model == "" {
		c.Model = d.Model
	}
	if c.MaxTurns == 0 {
		c.MaxTurns = d.MaxTurns
	}
	if c.MaxContinuations == 0 {
		c.MaxContinuations = d.MaxContinuations
	}
	if c.MaxBudgetUSD == nil {
		b := d.MaxBudgetUSD
		c.MaxBudgetUSD = &b
	}
	return c
}
