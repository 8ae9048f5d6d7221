package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// exported returns the name of every metric the daemon serves, with the
// series names of its histograms.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	m := New(Options{})
	ch := make(chan *prometheus.Desc, 1024)
	for _, c := range []prometheus.Collector{
		(*collector)(m), m.reconcile, m.events,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		c.Describe(ch)
	}
	close(ch)
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	out := map[string]bool{}
	for d := range ch {
		mm := name.FindStringSubmatch(d.String())
		if mm == nil {
			t.Fatalf("no name in %s", d)
		}
		out[mm[1]] = true
	}
	out["opsvc_reconcile_duration_seconds_bucket"] = true
	out["opsvc_reconcile_duration_seconds_sum"] = true
	out["opsvc_reconcile_duration_seconds_count"] = true
	return out
}

// TestGrafanaDashboard checks that every expression of the dashboard in
// contrib/grafana names only metrics the daemon serves, and that every
// opsvc metric is on the dashboard.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("../../contrib/grafana/opsvc-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if s, ok := e.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(dash)
	if len(exprs) < 10 {
		t.Fatalf("%d expressions on the dashboard, want a panel for each part", len(exprs))
	}
	have := exported(t)
	used := map[string]bool{}
	metric := regexp.MustCompile(`\b((?:opsvc|go|process)_[a-z0-9_]+)\b`)
	for _, e := range exprs {
		names := metric.FindAllString(e, -1)
		if len(names) == 0 {
			t.Errorf("expression %q names no metric of the daemon", e)
		}
		for _, n := range names {
			used[n] = true
			if !have[n] {
				t.Errorf("expression %q names %s, which the daemon does not serve", e, n)
			}
		}
	}
	var unused []string
	for n := range have {
		if strings.HasPrefix(n, "opsvc_") && !used[n] && n != "opsvc_reconcile_duration_seconds" {
			unused = append(unused, n)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("metrics not on the dashboard: %v", unused)
	}
}
