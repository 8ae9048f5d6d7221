package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/opsvc/opsvc/unit"
)

// WorktreeDir is the directory, inside the state directory, of the chains' git worktrees.
const WorktreeDir = "worktrees"

// gitTimeout bounds one git command.
const gitTimeout = 60 * time.Second

// gitOutputMax bounds what is kept of a git command's output.
const gitOutputMax = 64 << 10

// branchFor is the branch of chain id under pattern ("" for the default).
func branchFor(pattern, id string) string {
	if pattern == "" {
		pattern = unit.DefaultBranchPattern
	}
	return strings.ReplaceAll(pattern, "{chain_id}", id)
}

// worktreePath is where the worktree of branch lives: one directory per branch, so that a chain
// resuming another finds its working tree, uncommitted changes and all.
func worktreePath(state, branch string) string {
	return filepath.Join(state, WorktreeDir, strings.NewReplacer("/", "-", "\\", "-").Replace(branch))
}

// git runs git in dir with a bounded time and output, and returns its trimmed stdout.
func git(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	var out, errb limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), msg)
	}
	return strings.TrimSpace(out.String()), nil
}

// limitedBuffer keeps the first gitOutputMax bytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := gitOutputMax - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// openWorktree gives the chain its working tree on branch: the existing worktree of the branch
// (a resumed chain's), or a new one, on the branch as it is, or on a new branch from project_dir's
// current HEAD.
func (r *runner) openWorktree(branch string) error {
	if _, err := exec.LookPath("git"); err != nil {
		return fmt.Errorf(`git = "worktree" needs git: %v (install git, or remove git from the unit's [orchestrator] table)`, err)
	}
	top, err := git(r.project, "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("project_dir %s is not in a git repository (%v): git = \"worktree\" needs one", r.project, err)
	}
	if _, err := git(top, "check-ref-format", "--branch", branch); err != nil {
		return fmt.Errorf("branch %q is not a valid branch name (fix branch in the unit's [orchestrator] table): %v", branch, err)
	}
	dir := worktreePath(r.opts.StateDir, branch)
	if cur, err := git(dir, "rev-parse", "--abbrev-ref", "HEAD"); err == nil && cur == branch {
		r.repo, r.worktree = top, dir
		return nil // the resumed chain's tree
	}
	_, _ = git(top, "worktree", "prune")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %v", filepath.Dir(dir), err)
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists and is not a worktree of branch %s (move it away)", dir, branch)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	args := []string{"worktree", "add", dir, branch}
	if _, err := git(top, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch); err != nil {
		args = []string{"worktree", "add", "-b", branch, dir, "HEAD"}
	}
	if _, err := git(top, args...); err != nil {
		return err
	}
	r.repo, r.worktree = top, dir
	return nil
}

// closeWorktree removes the chain's worktree when the chain has ended for good; the branch
// stays. An interrupted chain keeps it for the chain that resumes it.
func (r *runner) closeWorktree(final bool) {
	if r.worktree == "" || !final {
		return
	}
	if _, err := git(r.repo, "worktree", "remove", "--force", r.worktree); err != nil {
		r.logf("chain %s: remove its worktree %s: %v (the branch %s is kept)", r.chainID, r.worktree, err, r.branch)
	}
}

// workDir is where the chain's sessions run: its git worktree, or project_dir.
func (r *runner) workDir() string {
	if r.worktree != "" {
		return r.worktree
	}
	return r.project
}

// commit is the last commit of the chain's branch, or "" without a worktree.
func (r *runner) commit() string {
	if r.worktree == "" {
		return ""
	}
	c, err := git(r.worktree, "rev-parse", "HEAD")
	if err != nil {
		r.logf("chain %s: the last commit of %s: %v", r.chainID, r.branch, err)
		return ""
	}
	return c
}
