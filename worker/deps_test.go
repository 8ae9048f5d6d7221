package worker

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDaemonImports keeps the dependencies pointing one way: no package under worker/, nor its
// tests, depends on anything under supervisor/ (the daemon). Workers reach the daemon through the
// IPC protocol only.
func TestNoDaemonImports(t *testing.T) {
	goTool, err := exec.LookPath("go") // go test puts $GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("no go command to list dependencies with: %v", err)
	}
	const module = "github.com/opsvc/opsvc/"
	out, err := exec.Command(goTool, "list", "-deps", "-test", "-f", "{{.ImportPath}} {{join .Imports \",\"}}", module+"worker/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	workers := 0
	for _, line := range lines {
		pkg, imports, _ := strings.Cut(line, " ")
		if strings.HasPrefix(pkg, module+"worker") {
			workers++
		}
		for imp := range strings.SplitSeq(imports, ",") {
			if strings.HasPrefix(imp, module+"supervisor") {
				t.Errorf("%s imports %s: the worker layer must not depend on the daemon", pkg, imp)
			}
		}
	}
	if workers < 6 { // worker, worker/chain, worker/orchestrator, and their tests
		t.Fatalf("go list -deps listed %d worker packages, too few:\n%s", workers, out)
	}
}
