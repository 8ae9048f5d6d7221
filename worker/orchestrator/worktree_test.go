//go:build linux

package orchestrator

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker/chain"
)

var gitEnv = []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null"}

// gitRepo makes a repository with one commit.
func gitRepo(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("# p\n"), 0o644)
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "start"}} {
		runGit(t, dir, args...)
	}
}

func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), gitEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestWorktreePerChain runs two chains of the same repository at once with git = "worktree":
// each works in a tree of its own on branch opsvc/CHAIN_ID, made from HEAD; the registry has the
// branch and each session's last commit; the worktree is gone at the end and the branch kept.
// A chain resuming one of them continues on its branch.
func TestWorktreePerChain(t *testing.T) {
	dir := t.TempDir()
	project := filepath.Join(dir, "project")
	gitRepo(t, project)
	agent := script(t, dir, "agent.sh", `
cat >/dev/null
pwd > "$OUT/pwd.$OPSVC_CHAIN_ID.$OPSVC_SESSION_INDEX"
echo "work $OPSVC_SESSION_INDEX of $OPSVC_CHAIN_ID" > "work-$OPSVC_SESSION_INDEX.txt"
git add . && git commit -q -m "session $OPSVC_SESSION_INDEX"
done=false; [ "$OPSVC_SESSION_INDEX" = 1 ] && done=true
printf '{"turns":1,"cost_usd":0.01,"done":%s}' "$done" > "$OPSVC_RESULT"
`)
	state := filepath.Join(dir, "state")
	desk := newDesk()
	env := append([]string{"OUT=" + dir}, gitEnv...)
	cfg := unit.Orchestrator{ProjectDir: project, Task: "t", Agent: []string{agent}, Git: "worktree", Resume: true}
	a := startRun(t, "a", state, desk, cfg, env...)
	b := startRun(t, "b", state, desk, cfg, env...)
	a.finish(t)
	b.finish(t)

	head := runGit(t, project, "rev-parse", "main")
	for _, name := range []string{"a", "b"} {
		c := onlyChain(t, desk, name)
		if c.Status != chain.Complete || c.Branch != "opsvc/"+c.ID || len(c.Sessions) != 2 {
			t.Fatalf("chain %s: %s on %q with %d sessions", name, c.Status, c.Branch, len(c.Sessions))
		}
		tree := worktreePath(state, c.Branch)
		if pwd := strings.TrimSpace(readFile(t, filepath.Join(dir, "pwd."+c.ID+".0"))); pwd != tree {
			t.Errorf("chain %s ran in %s, want its worktree %s", name, pwd, tree)
		}
		if _, err := os.Stat(tree); !os.IsNotExist(err) {
			t.Errorf("chain %s's worktree is still there: %v", name, err)
		}
		tip := runGit(t, project, "rev-parse", c.Branch)
		if c.Sessions[1].Commit != tip || c.Sessions[0].Commit == tip || c.Sessions[0].Commit == "" {
			t.Errorf("chain %s commits %q, %q; branch at %s", name, c.Sessions[0].Commit, c.Sessions[1].Commit, tip)
		}
		if base := runGit(t, project, "rev-parse", c.Branch+"~2"); base != head {
			t.Errorf("chain %s's branch starts at %s, want HEAD %s", name, base, head)
		}
	}
	if got := runGit(t, project, "rev-parse", "main"); got != head {
		t.Errorf("main moved to %s", got)
	}

	// A chain interrupted on its branch is resumed on it, in the same tree.
	old := chain.New("c-old", "r", "t", project, chain.DefaultConfig(), "", desk.chainsOf("a")[0].StartedAt)
	old.Branch = "opsvc/c-old"
	old.SetStatus(chain.Interrupted, old.StartedAt)
	desk.seed(old)
	runGit(t, project, "branch", "opsvc/c-old", "main")
	r := startRun(t, "r", state, desk, cfg, env...)
	r.finish(t)
	cs := desk.chainsOf("r")
	nc := cs[len(cs)-1]
	if nc.RestartedFrom != "c-old" || nc.Branch != "opsvc/c-old" || nc.Status != chain.Complete {
		t.Fatalf("resumed chain %+v, want it on opsvc/c-old", nc)
	}
	if tip := runGit(t, project, "rev-parse", "opsvc/c-old"); nc.Sessions[1].Commit != tip {
		t.Fatalf("resumed chain's last commit %q, branch at %s", nc.Sessions[1].Commit, tip)
	}
}
