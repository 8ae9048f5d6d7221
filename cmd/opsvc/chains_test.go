package main

import (
	"strings"
	"testing"

	"github.com/opsvc/opsvc/supervisor/registry"
	"github.com/opsvc/opsvc/worker/chain"
)

// TestChainShowsBranchAndCommits: opsvc chains show names a chain's branch, each session's
// last commit (shortened) and the command it ran.
func TestChainShowsBranchAndCommits(t *testing.T) {
	c := &registry.Chain{ID: "c1", Unit: "claude@a", Task: "t", ProjectDir: "/p", Status: chain.Complete, Branch: "opsvc/c1",
		Sessions: []chain.Session{
			{Index: 0, Status: chain.SessionComplete, Model: "opus", Commit: "0123456789abcdef0123", Command: "claude -p --model opus"},
			{Index: 1, Status: chain.SessionComplete, Model: "opus"},
		}}
	var b strings.Builder
	printChain(&b, c)
	out := b.String()
	for _, want := range []string{"  Branch:   opsvc/c1\n", " COMMIT ", " 0123456789ab ", "Session 0 ran: claude -p --model opus\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("chains show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "0123456789abc") {
		t.Errorf("commit not shortened to 12 characters:\n%s", out)
	}
}

// TestChainTableHost: the chain table has a HOST column when the chains come from a fleet,
// and none on a single host.
func TestChainTableHost(t *testing.T) {
	var b strings.Builder
	printChainTable(&b, []registry.ChainSummary{{ID: "c1", Unit: "u", Status: chain.Running}}, nil)
	if strings.Contains(b.String(), "HOST") {
		t.Errorf("single host table has HOST:\n%s", b.String())
	}
	b.Reset()
	printChainTable(&b, []registry.ChainSummary{{ID: "c1", Unit: "u", Status: chain.Running, Host: "web-1"}, {ID: "c2", Unit: "u", Status: chain.Running}}, nil)
	lines := strings.Split(b.String(), "\n")
	if !strings.HasPrefix(lines[0], "ID  UNIT  HOST   STATUS") || !strings.Contains(lines[1], " u     web-1  running") || !strings.Contains(lines[2], " u     -      running") {
		t.Errorf("fleet table:\n%s", b.String())
	}
}
