// Package metrics serves the daemon's Prometheus metrics. It reads the
// snapshot the reconcile loop publishes after each step, the event bus and
// the chain registry at scrape time: a scrape never waits on the loop, and
// the loop never waits on a scrape.
package metrics

import (
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opsvc/opsvc/supervisor/bus"
	"github.com/opsvc/opsvc/supervisor/registry"
)

// States are the unit states, in the order opsvc_unit_state lists them.
var states = [...]string{"inactive", "activating", "active", "deactivating", "failed"}

// Unit is one unit as the loop last saw it.
type Unit struct {
	Name     string
	State    string // one of inactive, activating, active, deactivating, failed
	Restarts int
	// HasExit is set once a process of the unit has exited; ExitCode is its
	// code, or 128+signal when a signal ended it.
	HasExit  bool
	ExitCode int
	// StartDuration is how long the last start took to get a process
	// running (dependency waits, fork and exec); ReadyDuration how long the
	// process then took to be ready. Each is only shown once known.
	StartDuration time.Duration
	ReadyDuration time.Duration
	StartKnown    bool
	ReadyKnown    bool
}

// UnitBudget is what one orchestrator unit spent today.
type UnitBudget struct {
	Unit    string  `json:"unit"`
	UsedUSD float64 `json:"used_usd"`
}

// Snapshot is the loop's state for scrapes. It is never changed once
// published.
type Snapshot struct {
	Units []Unit
	// LeasesHeld counts the session leases granted and not yet released;
	// LeasesWaiting the units whose last request for one was refused.
	LeasesHeld    int
	LeasesWaiting int
	// Day is the UTC date the spending is for (YYYY-MM-DD).
	Day string
	// GlobalUsedUSD is what all chains spent today; GlobalLimitUSD the daily
	// limit of all of them together (0 = none). UnitUsed is each unit's
	// spending today, and PerWorkerLimitUSD the daily limit of each.
	GlobalUsedUSD     float64
	GlobalLimitUSD    float64
	PerWorkerLimitUSD float64
	UnitUsed          []UnitBudget
}

// Events is the event bus as the metrics read it (*bus.Bus).
type Events interface {
	Subscribe(since uint64, f bus.Filter, follow bool) (*bus.Subscription, error)
	LastSeq() uint64
}

// Metrics holds the collectors of one daemon.
type Metrics struct {
	reg       *prometheus.Registry
	snap      atomic.Pointer[Snapshot]
	reconcile prometheus.Histogram
	events    *prometheus.CounterVec
	bus       Events
	store     registry.Backend
	handler   http.Handler

	mu       sync.Mutex
	counting bool
	types    map[string]bool // the type labels in use; owned by the counting goroutine
}

// Options are the sources of the metrics; each may be nil.
type Options struct {
	Events   Events
	Registry registry.Backend
}

// New returns the metrics, with the Go and process collectors.
func New(opts Options) *Metrics {
	m := &Metrics{
		reg:   prometheus.NewRegistry(),
		types: map[string]bool{},
		bus:   opts.Events,
		store: opts.Registry,
		reconcile: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "opsvc_reconcile_duration_seconds",
			Help:    "Time the reconcile loop spent on one step: handling what woke it, planning and acting.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsvc_events_total",
			Help: "Events published since the daemon started, by type.",
		}, []string{"type"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.reconcile, m.events, (*collector)(m),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	return m
}

// ServeHTTP answers a scrape in the Prometheus text format.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }

// Publish makes s the snapshot scrapes read. Called by the loop; it does
// not block.
func (m *Metrics) Publish(s *Snapshot) { m.snap.Store(s) }

// Snapshot is the last published snapshot, or nil.
func (m *Metrics) Snapshot() *Snapshot { return m.snap.Load() }

// ObserveReconcile records one step of the loop. It does not block.
func (m *Metrics) ObserveReconcile(d time.Duration) { m.reconcile.Observe(d.Seconds()) }

// CountEvents counts the events of the bus by type until done is closed;
// it returns at once if it is already counting or there is no bus. Events
// are counted from now on.
func (m *Metrics) CountEvents(done <-chan struct{}) {
	if m.bus == nil {
		return
	}
	m.mu.Lock()
	if m.counting {
		m.mu.Unlock()
		return
	}
	m.counting = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.counting = false
		m.mu.Unlock()
	}()
	since := m.bus.LastSeq()
	for {
		sub, err := m.bus.Subscribe(since, bus.Filter{}, true)
		if err != nil {
			return
		}
		since = m.count(sub, since, done)
		sub.Close()
		select {
		case <-done:
			return
		default:
		}
		if since == 0 { // the bus is closed
			return
		}
	}
}

// count reads sub until it ends; it returns the seq to subscribe again
// from, or 0 when there is nothing more to read.
func (m *Metrics) count(sub *bus.Subscription, since uint64, done <-chan struct{}) uint64 {
	for {
		select {
		case e, ok := <-sub.C():
			if !ok {
				return 0
			}
			if e.Type == bus.TypeLagged {
				if after, ok := e.Data["dropped_after"].(uint64); ok {
					return after
				}
				return since
			}
			if e.Seq > since {
				since = e.Seq
			}
			m.events.WithLabelValues(m.typeLabel(e.Type)).Inc()
		case <-done:
			return since
		}
	}
}

// MaxEventTypes bounds the type labels of opsvc_events_total: workers name
// their own messages, and a series per name must not grow without end.
// Types beyond it are counted as "other".
const MaxEventTypes = 256

// typeLabel is the label an event type is counted under. Only the counting
// goroutine calls it.
func (m *Metrics) typeLabel(t string) string {
	if m.types[t] {
		return t
	}
	if len(m.types) >= MaxEventTypes {
		return "other"
	}
	m.types[t] = true
	return t
}

// collector reads the snapshot and the registry at scrape time.
type collector Metrics

var (
	descUnitState = prometheus.NewDesc("opsvc_unit_state",
		"1 for the state the unit is in, 0 for the others.", []string{"unit", "state"}, nil)
	descRestarts = prometheus.NewDesc("opsvc_unit_restarts_total",
		"Automatic restarts of the unit since the daemon started.", []string{"unit"}, nil)
	descExit = prometheus.NewDesc("opsvc_unit_last_exit_code",
		"Exit code of the unit's last process (128+signal when a signal ended it).", []string{"unit"}, nil)
	descStartDur = prometheus.NewDesc("opsvc_unit_start_duration_seconds",
		"How long the unit's last start took to get its process running.", []string{"unit"}, nil)
	descReadyDur = prometheus.NewDesc("opsvc_unit_ready_duration_seconds",
		"How long the unit's last process took from its start to being ready.", []string{"unit"}, nil)
	descSeq = prometheus.NewDesc("opsvc_events_last_seq",
		"The seq of the last event published.", nil, nil)
	descChains = prometheus.NewDesc("opsvc_chains",
		"Chains in the registry (not archived), by status.", []string{"status"}, nil)
	descSessions = prometheus.NewDesc("opsvc_sessions",
		"Sessions of the chains in the registry, by outcome.", []string{"status"}, nil)
	descCost = prometheus.NewDesc("opsvc_orchestrator_cost_usd",
		"What the chains of the unit in the registry cost, in US dollars.", []string{"unit"}, nil)
	descTurns = prometheus.NewDesc("opsvc_orchestrator_turns",
		"Agent turns of the chains of the unit in the registry.", []string{"unit"}, nil)
	descGlobalUsed = prometheus.NewDesc("opsvc_budget_global_used_usd",
		"What all chains spent today (UTC), in US dollars.", nil, nil)
	descGlobalLimit = prometheus.NewDesc("opsvc_budget_global_limit_usd",
		"The daily budget of all chains together, in US dollars (0: no limit).", nil, nil)
	descGlobalLeft = prometheus.NewDesc("opsvc_budget_global_remaining_usd",
		"What all chains may still spend today, in US dollars (only with a limit).", nil, nil)
	descUnitUsed = prometheus.NewDesc("opsvc_budget_worker_used_usd",
		"What the unit's chains spent today (UTC), in US dollars.", []string{"unit"}, nil)
	descUnitLimit = prometheus.NewDesc("opsvc_budget_worker_limit_usd",
		"The daily budget of each orchestrator unit, in US dollars (0: no limit).", nil, nil)
	descUnitLeft = prometheus.NewDesc("opsvc_budget_worker_remaining_usd",
		"What the unit's chains may still spend today, in US dollars (only with a limit).", []string{"unit"}, nil)
	descHeld = prometheus.NewDesc("opsvc_leases_held",
		"Session leases granted and not yet released.", nil, nil)
	descWaiting = prometheus.NewDesc("opsvc_leases_waiting",
		"Orchestrator units whose last request for a session lease was refused.", nil, nil)
	descScrapeErr = prometheus.NewDesc("opsvc_registry_read_errors",
		"1 when the registry could not be read for this scrape.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUnitState, descRestarts, descExit, descStartDur, descReadyDur,
		descSeq, descChains, descSessions, descCost, descTurns, descGlobalUsed, descGlobalLimit, descGlobalLeft,
		descUnitUsed, descUnitLimit, descUnitLeft, descHeld, descWaiting, descScrapeErr} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if s := c.snap.Load(); s != nil {
		for _, u := range s.Units {
			for _, st := range states {
				v := 0.0
				if u.State == st {
					v = 1
				}
				gauge(descUnitState, v, u.Name, st)
			}
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(u.Restarts), u.Name)
			if u.HasExit {
				gauge(descExit, float64(u.ExitCode), u.Name)
			}
			if u.StartKnown {
				gauge(descStartDur, u.StartDuration.Seconds(), u.Name)
			}
			if u.ReadyKnown {
				gauge(descReadyDur, u.ReadyDuration.Seconds(), u.Name)
			}
		}
		gauge(descHeld, float64(s.LeasesHeld))
		gauge(descWaiting, float64(s.LeasesWaiting))
		gauge(descGlobalUsed, s.GlobalUsedUSD)
		gauge(descGlobalLimit, s.GlobalLimitUSD)
		if s.GlobalLimitUSD > 0 {
			gauge(descGlobalLeft, max(s.GlobalLimitUSD-s.GlobalUsedUSD, 0))
		}
		gauge(descUnitLimit, s.PerWorkerLimitUSD)
		for _, b := range s.UnitUsed {
			gauge(descUnitUsed, b.UsedUSD, b.Unit)
			if s.PerWorkerLimitUSD > 0 {
				gauge(descUnitLeft, max(s.PerWorkerLimitUSD-b.UsedUSD, 0), b.Unit)
			}
		}
	}
	if c.bus != nil {
		gauge(descSeq, float64(c.bus.LastSeq()))
	}
	if c.store != nil {
		c.collectRegistry(gauge)
	}
}

func (c *collector) collectRegistry(gauge func(*prometheus.Desc, float64, ...string)) {
	chains := map[string]int{}
	sessions := map[string]int{}
	cost := map[string]float64{}
	turns := map[string]int{}
	err := c.store.View(func(r *registry.Registry) error {
		for _, ch := range r.Chains {
			chains[string(ch.Status)]++
			cost[ch.Unit] += ch.TotalCostUSD
			turns[ch.Unit] += ch.TotalTurns
			for _, s := range ch.Sessions {
				sessions[string(s.Status)]++
			}
		}
		return nil
	})
	if err != nil {
		gauge(descScrapeErr, 1)
		return
	}
	gauge(descScrapeErr, 0)
	for _, st := range []registry.ChainStatus{registry.ChainRunning, registry.ChainComplete, registry.ChainFailed,
		registry.ChainInterrupted, registry.ChainExhausted, registry.ChainBudgetExceeded} {
		if _, ok := chains[string(st)]; !ok {
			chains[string(st)] = 0
		}
	}
	for _, st := range []registry.SessionStatus{registry.SessionComplete, registry.SessionError, registry.SessionInterrupted} {
		if _, ok := sessions[string(st)]; !ok {
			sessions[string(st)] = 0
		}
	}
	for _, k := range sortedKeys(chains) {
		gauge(descChains, float64(chains[k]), k)
	}
	for _, k := range sortedKeys(sessions) {
		gauge(descSessions, float64(sessions[k]), k)
	}
	for _, k := range sortedKeys(cost) {
		gauge(descCost, cost[k], k)
		gauge(descTurns, float64(turns[k]), k)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
