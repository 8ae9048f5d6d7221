package registry

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

// The test binary re-executed as a registry writer (see runWriter).
const (
	envWriter = "OPSVC_REGISTRY_TEST_WRITER" // mode
	envDir    = "OPSVC_REGISTRY_TEST_DIR"
	envN      = "OPSVC_REGISTRY_TEST_N"
	envID     = "OPSVC_REGISTRY_TEST_ID"
)

// Fixed chain ids the writers work on.
const (
	sharedID = "shared"
	counterA = "counter-a"
	counterB = "counter-b"
)

const waitLimit = 60 * time.Second // generous: 2 cores, -race, others compiling

func TestMain(m *testing.M) {
	if mode := os.Getenv(envWriter); mode != "" {
		if err := runWriter(mode); err != nil {
			fmt.Fprintln(os.Stderr, "writer:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// runWriter is the body of a writer process.
//
//	count: N Updates, each adding one turn to session ID of chain "shared".
//	kill:  prints "started", then Updates forever, each adding a finished
//	       chain and one turn to counter-a and counter-b (archive cap 3).
//	hold:  one Update whose fn prints "locked" and waits for a line on stdin;
//	       it adds one turn to counter-a.
//	hold-view: the same under View, changing nothing.
func runWriter(mode string) error {
	dir := os.Getenv(envDir)
	id, _ := strconv.Atoi(os.Getenv(envID))
	n, _ := strconv.Atoi(os.Getenv(envN))
	switch mode {
	case "count":
		s, err := Open(dir, Options{})
		if err != nil {
			return err
		}
		for range n {
			if err := s.Update(func(r *Registry) error { return bump(r, sharedID, id, time.Now()) }); err != nil {
				return err
			}
		}
		return nil
	case "kill":
		s, err := Open(dir, Options{ArchiveCap: 3})
		if err != nil {
			return err
		}
		fmt.Println("started")
		for {
			err := s.Update(func(r *Registry) error {
				now := time.Now()
				c := r.CreateChain("kill", "", "", ChainConfig{}, "", now)
				if err := r.SetStatus(c.ID, ChainComplete, now); err != nil {
					return err
				}
				if err := bump(r, counterA, 0, now); err != nil {
					return err
				}
				return bump(r, counterB, 0, now)
			})
			if err != nil {
				return err
			}
		}
	case "hold", "hold-view":
		s, err := Open(dir, Options{})
		if err != nil {
			return err
		}
		fn := func(r *Registry) error {
			fmt.Println("locked")
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return err
			}
			return bump(r, counterA, 0, time.Now())
		}
		if mode == "hold" {
			return s.Update(fn)
		}
		return s.View(fn)
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// bump adds one turn to session index of chain id.
func bump(r *Registry, id string, index int, now time.Time) error {
	c := r.Find(id)
	if c == nil {
		return fmt.Errorf("no chain %s", id)
	}
	s := Session{Index: index, Status: SessionComplete}
	for _, e := range c.Sessions {
		if e.Index == index {
			s = e
		}
	}
	s.Turns++
	return r.RecordSession(id, s, now)
}

// fixedIDs creates the named chains (running, so never archived).
func fixedIDs(t testing.TB, dir string, names ...string) {
	t.Helper()
	i := 0
	s, err := Open(dir, Options{NewID: func(time.Time) string { i++; return names[i-1] }})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(r *Registry) error {
		for range names {
			r.CreateChain("test", "", "", ChainConfig{}, "", time.Now())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// writer is a running writer process.
type writer struct {
	cmd   *exec.Cmd
	lines chan string // its stdout, line by line; closed at EOF
	stdin io.WriteCloser
	done  chan error // Wait's result
}

func startWriter(t *testing.T, mode, dir string, id, n int) *writer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envWriter+"="+mode, envDir+"="+dir, envID+"="+strconv.Itoa(id), envN+"="+strconv.Itoa(n))
	if os.Getenv("GORACE") == "" {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0") // -race builds otherwise linger 1 s at exit
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &writer{cmd: cmd, lines: make(chan string, 16), stdin: stdin, done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			_ = cmd.Process.Kill()
			<-w.done
		}
	})
	return w
}

// expect waits for the line want on the writer's stdout.
func (w *writer) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got, ok := <-w.lines:
		if !ok || got != want {
			t.Fatalf("writer said %q (open %v), want %q", got, ok, want)
		}
	case <-time.After(waitLimit):
		t.Fatalf("writer did not say %q within %v", want, waitLimit)
	}
}

// wait waits for the writer to exit.
func (w *writer) wait(t *testing.T) error {
	t.Helper()
	for range w.lines {
	}
	select {
	case err := <-w.done:
		w.done <- err // for Cleanup
		return err
	case <-time.After(waitLimit):
		t.Fatalf("writer did not exit within %v", waitLimit)
		return nil
	}
}

func view(t *testing.T, s Backend) *Registry {
	t.Helper()
	var got *Registry
	if err := s.View(func(r *Registry) error { got = r; return nil }); err != nil {
		t.Fatalf("View: %v", err)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "state"), Options{NewID: seqIDs()})
	if err != nil {
		t.Fatal(err)
	}
	if r := view(t, s); len(r.Chains) != 0 {
		t.Fatalf("missing file: %d chains, want an empty registry", len(r.Chains))
	}
	var want *Chain
	err = s.Update(func(r *Registry) error {
		c := r.CreateChain("orch", "task", "/p", ChainConfig{Model: "opus", MaxTurns: 3}, "", t0)
		if err := r.RecordSession(c.ID, Session{Index: 0, SessionID: "s0", Status: SessionError, Turns: 2, CostUSD: 0.25,
			InputTokens: 10, OutputTokens: 20, DurationMS: 300, Error: "boom", StartedAt: t0, EndedAt: at(1)}, at(1)); err != nil {
			return err
		}
		want = c
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := view(t, s).Find("c1")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	data, err := os.ReadFile(s.Path())
	if err != nil || !strings.HasPrefix(string(data), "{\"version\":2,\"chains\":[\n{\"id\":\"c1\",") {
		t.Errorf("registry.json starts %.40q (%v), want the version 2 schema", data, err)
	}

	// fn's error: nothing written, the error returned as is.
	boom := errors.New("boom")
	before, _ := os.Stat(s.Path())
	err = s.Update(func(r *Registry) error {
		r.CreateChain("x", "", "", ChainConfig{}, "", t0)
		return boom
	})
	if err != boom {
		t.Errorf("Update returned %v, want fn's error", err)
	}
	if r := view(t, s); len(r.Chains) != 1 {
		t.Errorf("a failed Update wrote %d chains, want 1", len(r.Chains))
	}
	after, _ := os.Stat(s.Path())
	if !os.SameFile(before, after) {
		t.Error("a failed Update replaced registry.json")
	}
	// An Update that changes nothing does not rewrite the file either.
	if err := s.Update(func(*Registry) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Stat(s.Path()); !os.SameFile(before, again) {
		t.Error("a no-op Update replaced registry.json")
	}
	// View's changes are discarded.
	if err := s.View(func(r *Registry) error { r.Chains = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if r := view(t, s); len(r.Chains) != 1 {
		t.Errorf("View's change was kept: %d chains", len(r.Chains))
	}
	// The mode of an existing registry.json is kept across writes.
	if err := os.Chmod(s.Path(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(r *Registry) error { return r.SetStatus("c1", ChainFailed, at(9)) }); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after Update = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
}

func TestCorruptKeptAside(t *testing.T) {
	tests := []struct {
		name, content string
		viaView       bool
	}{
		{"bad json", `{"version":1,"chains":[{"id":`, false},
		{"wrong version", `{"version":0,"chains":[]}`, false},
		{"no version", `{"chains":[]}`, true},
		{"null chain", `{"version":1,"chains":[null]}`, true},
		{"trailing garbage", `{"version":1,"chains":[]} x`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := func() time.Time { return t0 }
			s, err := Open(dir, Options{Now: clock, NewID: seqIDs()})
			if err != nil {
				t.Fatal(err)
			}
			// An earlier corrupt file kept aside at the same instant must survive.
			earlier := s.Path() + ".corrupt-20260102T030405.000000000Z"
			if err := os.WriteFile(earlier, []byte("earlier"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.Path(), []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			ran := false
			fn := func(*Registry) error { ran = true; return nil }
			if tt.viaView {
				err = s.View(fn)
			} else {
				err = s.Update(fn)
			}
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *CorruptError wrapping ErrCorrupt", err)
			}
			if ran {
				t.Error("fn ran on a corrupt registry")
			}
			if ce.Aside != earlier+"-2" || !strings.Contains(err.Error(), ce.Aside) {
				t.Errorf("kept aside as %q (message %q), want %q named in the message", ce.Aside, err, earlier+"-2")
			}
			for path, want := range map[string]string{ce.Aside: tt.content, earlier: "earlier"} {
				if got, err := os.ReadFile(path); err != nil || string(got) != want {
					t.Errorf("%s holds %q (%v), want %q", path, got, err, want)
				}
			}
			// The next call starts from an empty registry and never touches the kept file.
			if err := s.Update(func(r *Registry) error {
				if len(r.Chains) != 0 {
					return fmt.Errorf("%d chains after corruption, want 0", len(r.Chains))
				}
				r.CreateChain("u", "", "", ChainConfig{}, "", t0)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if r := view(t, s); len(r.Chains) != 1 {
				t.Errorf("%d chains, want 1", len(r.Chains))
			}
			if got, _ := os.ReadFile(ce.Aside); string(got) != tt.content {
				t.Errorf("kept file changed to %q", got)
			}
		})
	}
}

func TestEmptyFileIsEmptyRegistry(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(), []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := view(t, s); len(r.Chains) != 0 {
		t.Errorf("%d chains, want 0", len(r.Chains))
	}
	if m, _ := filepath.Glob(s.Path() + ".corrupt-*"); len(m) != 0 {
		t.Errorf("an empty file was kept aside: %v", m)
	}
}

func TestArchiveFile(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{ArchiveCap: 2, NewID: seqIDs()})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadArchive(); err != nil || len(got) != 0 {
		t.Fatalf("missing archive: %v, %v; want empty", got, err)
	}
	// c1 stays running; c2…c6 finish in turn, each newer than the last.
	for i := range 6 {
		err := s.Update(func(r *Registry) error {
			c := r.CreateChain("u", fmt.Sprint("task ", i), "", ChainConfig{}, "", at(i))
			if i == 0 {
				return nil
			}
			return r.SetStatus(c.ID, ChainComplete, at(i))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"c1", "c6"}, ids(view(t, s).Chains)); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	got, err := s.ReadArchive()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"c2", "c3", "c4", "c5"}, ids(got)); diff != "" {
		t.Errorf("archived (-want +got):\n%s", diff)
	}
	if got[0].Task != "task 1" || got[0].Status != ChainComplete {
		t.Errorf("archived chain lost its data: %+v", got[0])
	}

	// A crash can leave a torn last line, or a chain both archived and kept
	// (appended twice later). Neither loses a chain.
	path := filepath.Join(dir, ArchiveName)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	dup := got[1]
	dup.Task = "again"
	line := fmt.Sprintf(`{"id":%q,"unit":"u","task":"again","status":"complete"}`+"\n", dup.ID)
	if _, err := f.WriteString(line + `{"id":"torn","unit`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := s.Update(func(r *Registry) error {
		c := r.CreateChain("u", "", "", ChainConfig{}, "", at(10))
		return r.SetStatus(c.ID, ChainFailed, at(10))
	}); err != nil {
		t.Fatal(err)
	}
	got, err = s.ReadArchive()
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), ArchiveName+":6:") {
		t.Errorf("ReadArchive err = %v, want ErrCorrupt naming line 6", err)
	}
	if diff := cmp.Diff([]string{"c2", "c3", "c4", "c5", "c6"}, ids(got)); diff != "" {
		t.Errorf("archived after torn line (-want +got):\n%s", diff)
	}
	if got[1].Task != "again" {
		t.Errorf("a chain archived twice reads %q, want the last copy", got[1].Task)
	}
}

// TestConcurrentWriters: 8 processes × 500 Updates of one chain lose nothing.
func TestConcurrentWriters(t *testing.T) {
	const procs, updates = 8, 500
	dir := t.TempDir()
	fixedIDs(t, dir, sharedID)
	var ws []*writer
	for i := range procs {
		ws = append(ws, startWriter(t, "count", dir, i, updates))
	}
	for i, w := range ws {
		if err := w.wait(t); err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := view(t, s).Find(sharedID)
	if c.TotalTurns != procs*updates {
		t.Errorf("total turns = %d, want %d: updates were lost", c.TotalTurns, procs*updates)
	}
	if len(c.Sessions) != procs {
		t.Fatalf("%d sessions, want %d", len(c.Sessions), procs)
	}
	for _, sess := range c.Sessions {
		if sess.Turns != updates {
			t.Errorf("writer %d: %d turns, want %d", sess.Index, sess.Turns, updates)
		}
	}
}

// TestConcurrentGoroutines: many Stores in one process exclude each other too.
func TestConcurrentGoroutines(t *testing.T) {
	const n, updates = 4, 50
	dir := t.TempDir()
	fixedIDs(t, dir, sharedID)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			s, err := Open(dir, Options{})
			if err != nil {
				errs <- err
				return
			}
			for range updates {
				if err := s.Update(func(r *Registry) error { return bump(r, sharedID, i, time.Now()) }); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s, _ := Open(dir, Options{})
	if got := view(t, s).Find(sharedID).TotalTurns; got != n*updates {
		t.Errorf("total turns = %d, want %d", got, n*updates)
	}
}

// TestKilledWriters: a writer SIGKILLed at a random point never leaves a
// registry that fails to load, or one whose counters disagree.
func TestKilledWriters(t *testing.T) {
	kills := 100
	if testing.Short() {
		kills = 20
	}
	dir := t.TempDir()
	fixedIDs(t, dir, counterA, counterB)
	s, err := Open(dir, Options{ArchiveCap: 3})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	last := 0
	for i := range kills {
		w := startWriter(t, "kill", dir, 0, 0)
		w.expect(t, "started")
		// The random delay picks the point of the kill; it does not order anything.
		<-time.After(time.Duration(rng.IntN(20_000)) * time.Microsecond)
		if err := w.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		var ee *exec.ExitError
		if err := w.wait(t); !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("kill %d: writer ended with %v, want killed by the signal", i, err)
		}

		// Every finished chain is kept or archived; one cut off between the
		// archive append and the registry write is in both, counted once.
		var a, b int
		finished := make(map[string]bool)
		if err := s.View(func(r *Registry) error {
			ca, cb := r.Find(counterA), r.Find(counterB)
			if ca == nil || cb == nil {
				return fmt.Errorf("the counter chains are gone (%d chains)", len(r.Chains))
			}
			a, b = ca.TotalTurns, cb.TotalTurns
			for _, c := range r.Chains {
				if c.Status == ChainComplete {
					finished[c.ID] = true
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("kill %d: registry does not load: %v", i, err)
		}
		archived, err := s.ReadArchive()
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("kill %d: ReadArchive: %v", i, err)
		}
		kept := len(finished)
		for _, c := range archived {
			finished[c.ID] = true
		}
		if a != b || a != len(finished) || a < last {
			t.Fatalf("kill %d: counter-a %d, counter-b %d, %d distinct chains (%d kept, %d archived), earlier count %d: want all equal and not less",
				i, a, b, len(finished), kept, len(archived), last)
		}
		last = a
	}
	if m, _ := filepath.Glob(filepath.Join(dir, FileName+".corrupt-*")); len(m) != 0 {
		t.Errorf("a kill left a corrupt registry: %v", m)
	}
	t.Logf("%d kills, %d updates survived", kills, last)
}

func BenchmarkUpdate(b *testing.B) {
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	// A realistic registry: 100 chains of 5 sessions each.
	var first string
	err = s.Update(func(r *Registry) error {
		for i := range 100 {
			c := r.CreateChain(fmt.Sprintf("orch@%d", i%10), "Work through ROADMAP.md", "/srv/repos/project",
				ChainConfig{Model: "sonnet", MaxTurns: 30, MaxContinuations: 5, MaxBudgetUSD: 5}, "", time.Now())
			if i == 0 {
				first = c.ID
			}
			for j := range 5 {
				if err := r.RecordSession(c.ID, Session{Index: j, SessionID: fmt.Sprintf("sess-%d-%d", i, j), Status: SessionComplete,
					Turns: 12, CostUSD: 0.42, InputTokens: 12000, OutputTokens: 3400, DurationMS: 95000,
					HandoffFile: "/srv/repos/project/.opsvc/handoff.md", StartedAt: time.Now(), EndedAt: time.Now()}, time.Now()); err != nil {
					return err
				}
			}
			if err := r.SetStatus(c.ID, ChainComplete, time.Now()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		if err := s.Update(func(r *Registry) error {
			c := r.Find(first)
			sess := c.Sessions[0]
			sess.Turns = i
			return r.RecordSession(first, sess, time.Now())
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// The decoded-line cache must never leak a change that was not written.
func TestUpdateCacheKeepsOnlyWrittenState(t *testing.T) {
	st, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var id string
	if err := st.Update(func(r *Registry) error {
		id = r.CreateChain("u", "task", "/p", ChainConfig{Model: "sonnet"}, "", time.Now()).ID
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := st.Update(func(r *Registry) error {
		r.Find(id).Task = "changed"
		r.Find(id).Sessions = append(r.Find(id).Sessions, Session{Index: 0})
		return boom
	}); err != boom {
		t.Fatalf("Update = %v, want boom", err)
	}
	if err := st.View(func(r *Registry) error {
		c := r.Find(id)
		if c.Task != "task" || len(c.Sessions) != 0 {
			t.Errorf("after a failed update: task %q, %d sessions; want the written state", c.Task, len(c.Sessions))
		}
		c.Task = "changed in a view"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(r *Registry) error {
		if r.Find(id).Task != "task" {
			t.Errorf("a View's change leaked into the next Update: %q", r.Find(id).Task)
		}
		r.Find(id).Task = "written"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	fresh, _ := Open(st.Dir(), Options{})
	fresh.View(func(r *Registry) error {
		if r.Find(id).Task != "written" {
			t.Errorf("a fresh store reads %q, want written", r.Find(id).Task)
		}
		return nil
	})
}

// TestSchemaVersions reads a version 1 registry (total_duration_ms summed the sessions' own
// durations) as version 2 (wall-clock), writes it back as version 2, and refuses a newer version
// without touching the file.
func TestSchemaVersions(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v1 := `{"version":1,"chains":[{"id":"c1","unit":"u","task":"t","status":"complete","started_at":"2026-01-02T03:00:00Z","updated_at":"2026-01-02T03:10:00Z","project_dir":"/p","restarted_from":"","config":{"model":"sonnet","max_turns":30,"max_continuations":5,"max_budget_usd":5},"sessions":[{"index":0,"session_id":"s","status":"complete","turns":3,"cost_usd":0.123456,"input_tokens":1,"output_tokens":2,"duration_ms":1000,"hit_max_turns":false,"handoff_complete":false,"handoff_file":"","error":""}],"total_cost_usd":0.123456,"total_turns":3,"total_duration_ms":1000,"consecutive_errors":0}]}`
	if err := os.WriteFile(s.Path(), []byte(v1), 0o644); err != nil {
		t.Fatal(err)
	}
	c := view(t, s).Find("c1")
	if c == nil || c.TotalDurationMS != 10*60*1000 || c.TotalCostUSD != 0.123456 {
		t.Fatalf("migrated chain %+v, want 10 minutes wall-clock and the cost unrounded", c)
	}
	if err := s.Update(func(r *Registry) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(r *Registry) error { r.Find("c1").Task = "t2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(s.Path()); !strings.HasPrefix(string(data), `{"version":2,`) {
		t.Fatalf("written back as %.20q, want version 2", data)
	}

	v9 := `{"version":9,"chains":[]}`
	os.WriteFile(s.Path(), []byte(v9), 0o644)
	err = s.View(func(*Registry) error { return nil })
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Version != 9 || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "newer than this opsvc's 2") {
		t.Fatalf("err = %v, want a VersionError for version 9", err)
	}
	if err := s.Update(func(*Registry) error { return nil }); !errors.As(err, &ve) {
		t.Fatalf("update: err = %v, want a VersionError", err)
	}
	if data, _ := os.ReadFile(s.Path()); string(data) != v9 {
		t.Fatalf("the newer file was changed: %q", data)
	}
}
