package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain doubles as a regbench worker: the parent re-executes the test
// binary with workerEnv set.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString("regbench worker: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func TestRunCountsEveryUpdate(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run([]string{"-dir", dir, "-procs", "3", "-n", "15"}, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	if res.Procs != 3 || res.Updates != 45 || res.Lost != 0 {
		t.Errorf("result %+v, want 3 procs, 45 updates, 0 lost", res)
	}
	if res.Seconds <= 0 || res.PerSec <= 0 {
		t.Errorf("result %+v: no duration or rate", res)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-dir", t.TempDir(), "-procs", "0"}, {"-dir", t.TempDir(), "-n", "-1"}} {
		if err := run(args, strings.NewReader(""), &bytes.Buffer{}); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
}

func TestWorkerNeedsItsChain(t *testing.T) {
	t.Setenv(workerEnv, "1")
	err := run([]string{"-dir", t.TempDir(), "-n", "1", "-chain", "nope"}, strings.NewReader("go\n"), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "chain nope is missing") {
		t.Fatalf("err = %v, want a missing chain", err)
	}
}
