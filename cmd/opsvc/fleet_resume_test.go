//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/cluster/etcdtest"
	"github.com/opsvc/opsvc/supervisor"
	"github.com/opsvc/opsvc/supervisor/registry"
)

// resumeClaude stands in for claude: the fake Claude Code of the
// orchestrator's tests, which on host h1 hangs in the chain's second session
// (the host dies mid-chain); each session logs "HOST CHAIN INDEX PID".
const resumeClaude = `#!/bin/sh
echo "$HOST_TAG $OPSVC_CHAIN_ID $OPSVC_SESSION_INDEX $$" >> "$RESUME_LOG"
if [ "$HOST_TAG" = h1 ] && [ "$OPSVC_SESSION_INDEX" = 1 ]; then export FAKE_CLAUDE_MODE=hang; fi
exec %q "$@"
`

// fleetOrch is a fleet orchestrator unit of host tag.
func fleetOrch(tag, project, logPath string) string {
	return fmt.Sprintf(`[unit]
placement = "fleet"
[service]
restart = "no"
stop_timeout = "2s"
environment = { HOST_TAG = %q, RESUME_LOG = %q, FAKE_CLAUDE_TURNS = "1", FAKE_CLAUDE_HANDOFF = "next: the rest" }
[orchestrator]
project_dir = %q
task = "work through the roadmap"
max_continuations = 2
resume = true
`, tag, logPath, project)
}

// sessionLine is one session as resumeClaude logged it.
type sessionLine struct {
	host, chain string
	index, pid  int
}

func readSessions(t *testing.T, path string) []sessionLine {
	data, _ := os.ReadFile(path)
	var out []sessionLine
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			continue
		}
		idx, _ := strconv.Atoi(f[2])
		pid, _ := strconv.Atoi(f[3])
		out = append(out, sessionLine{f[0], f[1], idx, pid})
	}
	return out
}

// TestFleetChainResumesOnTakeover: a fleet orchestrator mid-chain on one
// host; that host dies (kill -9 of its daemon, and of its worker's and
// session's process groups, as the end of the machine would do); another
// host takes the unit over and its chain resumes the dead host's, with
// restarted_from, the dead host's chain ends interrupted, and the lineage
// shows both.
func TestFleetChainResumesOnTakeover(t *testing.T) {
	ec := etcdtest.Start(t, 1)
	work := t.TempDir()
	project := filepath.Join(work, "project")
	logPath := filepath.Join(work, "sessions.log")
	bin := filepath.Join(work, "bin")
	os.MkdirAll(project, 0o755)
	os.MkdirAll(bin, 0o755)
	fake, err := filepath.Abs("../../worker/orchestrator/testdata/fake-claude")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "claude"), fmt.Appendf(nil, resumeClaude, fake), 0o755); err != nil {
		t.Fatal(err)
	}
	path := "PATH=" + bin + ":" + os.Getenv("PATH")
	var groups []int // process groups a dead daemon leaves behind
	t.Cleanup(func() {
		for _, s := range readSessions(t, logPath) {
			groups = append(groups, s.pid)
		}
		for _, g := range groups {
			syscall.Kill(-g, syscall.SIGKILL)
		}
	})
	h1 := startFleetDaemonWith(t, "h1", ec.Endpoints(), fleetTTL, map[string]string{"orch": fleetOrch("h1", project, logPath)}, "orch", path)
	h1.waitFor(20*time.Second, "h1 runs orch", func() bool {
		us, err := h1.status("orch")
		return err == nil && us.State == supervisor.Active && us.PID > 0
	})
	h2 := startFleetDaemonWith(t, "h2", ec.Endpoints(), fleetTTL, map[string]string{"orch": fleetOrch("h2", project, logPath)}, "orch", path)

	// h1's chain is in its second session, which hangs.
	var first sessionLine
	h1.waitFor(30*time.Second, "h1's chain runs its second session", func() bool {
		for _, s := range readSessions(t, logPath) {
			if s.host == "h1" && s.index == 1 {
				first = s
				return true
			}
		}
		return false
	})
	var old registry.Chain
	h1.waitFor(10*time.Second, "h1's chain is running, with its first session recorded and h1's hold", func() bool {
		out, code := h2.opsvc("chains", "show", first.chain, "--json")
		return code == 0 && json.Unmarshal([]byte(out), &old) == nil && len(old.Sessions) == 1 &&
			old.Status == registry.ChainRunning && old.Host == "h1" && old.Hold != ""
	})
	us, err := h1.status("orch")
	if err != nil || us.PID == 0 {
		t.Fatalf("orch on h1: %+v %v", us, err)
	}
	if st, _ := h2.status("orch"); st.Sub != "standby" || st.Host != "h1" {
		t.Fatalf("orch on h2: %s (%s) host %q, want standby, on h1", st.State, st.Sub, st.Host)
	}

	// h1 dies. A daemon killed with -9 leaves its worker running (its next
	// start ends it); the machine's end takes them all: the worker's group,
	// and the session's.
	groups = append(groups, us.PID, first.pid)
	killed := time.Now()
	h1.cmd.Process.Kill()
	<-h1.done
	syscall.Kill(-us.PID, syscall.SIGKILL)
	syscall.Kill(-first.pid, syscall.SIGKILL)

	// h2 takes orch over, and its chain resumes h1's.
	var next registry.ChainSummary
	h2.waitFor(fleetTTL+20*time.Second, "h2's chain resumes h1's", func() bool {
		out, code := h2.opsvc("chains", "ls", "--json")
		var list registry.ChainList
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
			return false
		}
		for _, c := range list.Chains {
			if c.Host == "h2" && c.RestartedFrom == first.chain {
				next = c
				return true
			}
		}
		return false
	})
	t.Logf("h1 killed; h2's chain %s resumed %s after %v", next.ID, first.chain, time.Since(killed).Round(time.Millisecond))
	out, code := h2.opsvc("chains", "show", first.chain, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &old) != nil {
		t.Fatalf("chains show %s: exit %d\n%s", first.chain, code, out)
	}
	if old.Status != registry.ChainInterrupted || !strings.Contains(old.Reason, "h1") {
		t.Errorf("h1's chain after the takeover: %s (%q); want interrupted, saying h1 lost the unit", old.Status, old.Reason)
	}
	// Every chain of orch: h1's, and h2's resuming it; no other.
	out, _ = h2.opsvc("chains", "ls", "--json")
	var list registry.ChainList
	json.Unmarshal([]byte(out), &list)
	if len(list.Chains) != 2 {
		t.Errorf("chains after the takeover: %+v, want h1's and the one resuming it", list.Chains)
	}
	out, code = h2.opsvc("chains", "lineage", first.chain)
	if code != 0 || !strings.Contains(out, first.chain) || !strings.Contains(out, next.ID) {
		t.Errorf("chains lineage %s: exit %d, want both chains:\n%s", first.chain, code, out)
	}
	// The resumed chain's sessions run on h2, and its first one gets h1's handoff.
	h2.waitFor(30*time.Second, "h2's chain runs a session", func() bool {
		for _, s := range readSessions(t, logPath) {
			if s.chain == next.ID && s.host == "h2" {
				return true
			}
		}
		return false
	})
	if st, err := h2.status("orch"); err != nil || st.Host != "h2" {
		t.Errorf("orch on h2 after the takeover: %+v %v, want it placed on h2", st, err)
	}
}
