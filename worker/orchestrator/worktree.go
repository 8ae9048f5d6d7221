package orchestrator

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
	return gitHead(r.worktree)
}

func gitHead(dir string) string { return "" }
