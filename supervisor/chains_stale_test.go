//go:build unix

package supervisor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/api"
	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/worker/chain"
)

// TestStaleChainAfterKill9 kills the worker of a unit with resume = false and no restart during a
// session: the daemon marks its chain interrupted at once, with the reason, and says so on the bus.
func TestStaleChainAfterKill9(t *testing.T) {
	dir := shortTemp(t)
	agent := filepath.Join(dir, "agent.sh")
	os.WriteFile(agent, []byte("#!/bin/sh\ncat >/dev/null\necho running\nexec sleep 1000\n"), 0o755)
	h := newHarness(t, map[string]string{"stale.toml": strings.Replace(orchestratorUnit(agent, ""), `restart = "on-failure"`, `restart = "no"`, 1)}, withRegistry(t))
	created := h.waitEvent("chain.created", "stale")
	id, _ := created.Data["chain_id"].(string)
	h.waitLog("stale", "running")
	if err := syscall.Kill(h.status("stale").PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev := h.waitEventWhere("chain.interrupted", "stale", func(d map[string]any) bool { return d["chain_id"] == id })
	if r, _ := ev.Data["reason"].(string); !strings.Contains(r, "its worker exited") {
		t.Fatalf("chain.interrupted reason %q", r)
	}
	cs := chainsOf(t, h.sup.opts.Registry, "stale")
	if len(cs) != 1 || cs[0].Status != registry.ChainInterrupted || !strings.Contains(cs[0].Reason, "its worker exited") {
		t.Fatalf("chains %+v, want the one interrupted with its reason", cs)
	}
}

// TestStaleChainsAtStart starts a daemon whose registry holds a chain left running by a daemon
// that died: it is interrupted before any unit starts, and a chain that ended is left alone.
func TestStaleChainsAtStart(t *testing.T) {
	var running, ended string
	seed := func(o *Options) {
		reg, err := registry.Open(o.Paths.State, registry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().Add(-time.Minute)
		err = reg.Update(func(r *registry.Registry) error {
			running = r.CreateChain("gone", "t", "/p", chain.DefaultConfig(), "", now).ID
			c := r.CreateChain("gone", "t", "/p", chain.DefaultConfig(), "", now)
			ended = c.ID
			return c.SetStatus(chain.Complete, now)
		})
		if err != nil {
			t.Fatal(err)
		}
		o.Registry = reg
	}
	h := newHarness(t, map[string]string{}, seed)
	ev := h.waitEventWhere("chain.interrupted", "", func(d map[string]any) bool { return d["chain_id"] == running })
	if r, _ := ev.Data["reason"].(string); !strings.Contains(r, "the daemon restarted") {
		t.Fatalf("reason %q", r)
	}
	for _, c := range chainsOf(t, h.sup.opts.Registry, "gone") {
		want := registry.ChainInterrupted
		if c.ID == ended {
			want = registry.ChainComplete
		}
		if c.Status != want {
			t.Fatalf("chain %s is %s, want %s", c.ID, c.Status, want)
		}
	}
}

// TestSettingsWakeLeaseWaiter holds an orchestrator's second session back with
// max_sessions_per_minute = 1 (a wait of about a minute), then lifts the limit and changes the
// model, through PUT /v1/settings or by editing opsvc.toml: the worker asks again at once, and the
// session runs with the new model (the unit sets none).
func TestSettingsWakeLeaseWaiter(t *testing.T) {
	for _, how := range []string{"api", "file"} {
		t.Run(how, func(t *testing.T) {
			dir := shortTemp(t)
			agent := filepath.Join(dir, "agent.sh")
			os.WriteFile(agent, []byte(`#!/bin/sh
cat >/dev/null
echo "$OPSVC_MODEL" > "`+dir+`/model-$OPSVC_SESSION_INDEX"
done=false; [ "$OPSVC_SESSION_INDEX" = 1 ] && done=true
printf '{"turns":1,"cost_usd":0.01,"done":%s}' "$done" > "$OPSVC_RESULT"
`), 0o755)
			limit := func(o *Options) { o.Settings.Orchestrator.MaxSessionsPerMinute = 1 }
			h := newHarness(t, map[string]string{"wake.toml": orchestratorUnit(agent, "")}, withRegistry(t), limit)
			h.waitEventWhere("session.finished", "wake", func(d map[string]any) bool { return num(d["index"]) == 0 })
			h.waitEventWhere("unit.status", "wake", func(d map[string]any) bool {
				s, _ := d["text"].(string)
				return strings.Contains(s, "waiting for a session lease: max_sessions_per_minute")
			})
			if how == "api" {
				code, body := h.do("PUT", "/v1/settings", strings.NewReader(`{"orchestrator":{"max_sessions_per_minute":0,"model":"haiku"}}`))
				if code != 200 {
					t.Fatalf("PUT /v1/settings: %d %s", code, body)
				}
			} else {
				file := h.sup.opts.Paths.Config
				if err := os.WriteFile(file+".tmp", []byte("[orchestrator]\nmax_sessions_per_minute = 0\nmodel = \"haiku\"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(file+".tmp", file); err != nil {
					t.Fatal(err)
				}
				h.waitEvent("config.settings", "")
			}
			// Unwoken, the worker would ask again in about a minute: past waitEventWhere's 15 s.
			h.waitEventWhere("session.started", "wake", func(d map[string]any) bool { return num(d["index"]) == 1 })
			h.waitEvent("chain.completed", "wake")
			for i, want := range []string{"sonnet", "haiku"} {
				got, _ := os.ReadFile(filepath.Join(dir, "model-"+string(rune('0'+i))))
				if strings.TrimSpace(string(got)) != want {
					t.Errorf("session %d model %q, want %q", i, got, want)
				}
			}
		})
	}
}

// TestArchivedChainsReadable archives two of three ended chains: GET /v1/chains lists the one
// left, ?all=1 all three, and GET /v1/chains/ID finds an archived one.
func TestArchivedChainsReadable(t *testing.T) {
	var ids []string
	seed := func(o *Options) {
		reg, err := registry.Open(o.Paths.State, registry.Options{ArchiveCap: 1})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			now := time.Now().Add(time.Duration(i-10) * time.Minute)
			err := reg.Update(func(r *registry.Registry) error {
				c := r.CreateChain("old", "t", "/p", chain.DefaultConfig(), "", now)
				ids = append(ids, c.ID)
				return c.SetStatus(chain.Complete, now)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		o.Registry = reg
	}
	h := newHarness(t, map[string]string{}, seed)
	count := func(path string) int {
		code, body := h.do("GET", path, nil)
		var out struct {
			Chains []registry.ChainSummary `json:"chains"`
		}
		if code != 200 || json.Unmarshal(body, &out) != nil {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return len(out.Chains)
	}
	if n, all := count("/v1/chains"), count("/v1/chains?all=1"); n != 1 || all != 3 {
		t.Fatalf("%d chains listed, %d with the archive; want 1 and 3", n, all)
	}
	if code, body := h.do("GET", "/v1/chains/"+ids[0], nil); code != 200 || !strings.Contains(string(body), ids[0]) {
		t.Fatalf("GET an archived chain: %d %s", code, body)
	}
}

// TestProgressPayloadsAgree checks that the daemon's typed session.progress (package api) has the
// fields the worker sends (package chain's Progress), with the same JSON names.
func TestProgressPayloadsAgree(t *testing.T) {
	keys := func(v any) []string {
		b, _ := json.Marshal(v)
		var m map[string]any
		json.Unmarshal(b, &m)
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	full := chain.Progress{ChainID: "c", SessionID: "s", Model: "m", LastTool: "t", Done: true}
	typed := api.SessionProgress{ChainID: "c", SessionID: "s", Model: "m", LastTool: "t", Done: true}
	if a, b := keys(full), keys(typed); !slices.Equal(a, b) {
		t.Fatalf("worker sends %v, the daemon's type has %v", a, b)
	}
	if chain.EventProgress != api.TypeSessionProgress {
		t.Fatalf("event names %q and %q", chain.EventProgress, api.TypeSessionProgress)
	}
}
