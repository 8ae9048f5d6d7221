package orchestrator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opsvc/opsvc/unit"
	"github.com/opsvc/opsvc/worker"
	"github.com/opsvc/opsvc/worker/chain"
)

// stdoutTail is how much of a session's stdout is kept to find its result.
const stdoutTail = 1 << 20

// maxLine is the longest output line passed on whole; a longer one is passed on in pieces.
const maxLine = 64 << 10

// droppedEnv are the worker's variables a session does not inherit: its channel, its
// configuration, and the daemon's sd_notify socket and watchdog, which are the worker's own.
var droppedEnv = []string{
	worker.EnvIPCFD, worker.EnvNodeChannelFD, worker.EnvNodeSerialization, EnvConfig,
	worker.EnvHeartbeatUSEC, "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", envGuard,
}

// sessionEnv is base without droppedEnv, with set added (replacing any value base had).
func sessionEnv(base []string, set map[string]string) []string {
	env := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; ok || slices.Contains(droppedEnv, k) {
			continue
		}
		env = append(env, kv)
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+set[k])
	}
	return env
}

// lookupEnv returns the value of key in env.
func lookupEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// prompt is a session's stdin: the task and, when handoff names a readable non-empty file, a blank
// line, "Previous session handoff:" and its content. It returns the handoff it used, or "".
func prompt(task, handoff string) (string, string) {
	var b strings.Builder
	b.WriteString(task)
	if !strings.HasSuffix(task, "\n") {
		b.WriteByte('\n')
	}
	if handoff == "" {
		return b.String(), ""
	}
	data, err := os.ReadFile(handoff)
	if err != nil || len(data) == 0 {
		return b.String(), ""
	}
	b.WriteString("\nPrevious session handoff:\n")
	b.Write(data)
	if data[len(data)-1] != '\n' {
		b.WriteByte('\n')
	}
	return b.String(), handoff
}

// sessionSpec is one session to run.
type sessionSpec struct {
	index      int
	call       agentCall // the agent command, placeholders replaced
	model      string    // the session's model, to price a stream that gives no cost
	budget     budgetLimit
	dir        string // where it runs (project_dir, or the chain's worktree), absolute
	env        []string
	prompt     string
	handoffIn  string
	handoffOut string
	resultPath string
}

// outcome is a finished session.
type outcome struct {
	chain.Session
	Done bool
}

// findAgent resolves the agent command's name as the session will run it: a path with a slash,
// made absolute, or a bare name looked up in the session's PATH. It checks that it is an
// executable file.
func findAgent(name string, env []string) (string, error) {
	if name == "" {
		return "", errors.New("no agent command (set agent in the unit's [orchestrator] table)")
	}
	if strings.Contains(name, "/") {
		abs, err := filepath.Abs(name)
		if err != nil {
			return "", fmt.Errorf("agent %q: %v", name, err)
		}
		if err := checkExecutable(abs); err != nil {
			return "", fmt.Errorf("agent %s: %w", abs, err)
		}
		return abs, nil
	}
	path := lookupEnv(env, "PATH")
	if p, err := unit.LookPath(name, path); err == nil {
		return p, nil
	}
	if name == unit.AgentPreset {
		return "", fmt.Errorf("agent %q (Claude Code, the default agent) is not in PATH %q (install it, add its directory to the unit's PATH, or set agent to its absolute path or to another agent)", name, path)
	}
	return "", fmt.Errorf("agent %q: not found in PATH %q (install it, or give its absolute path in agent)", name, path)
}

// checkExecutable says what keeps path from being run as a program.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (fix agent in the unit's [orchestrator] table)", fs.ErrNotExist)
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory, not a program")
	}
	if !fi.Mode().IsRegular() {
		return errors.New("is not a regular file")
	}
	if err := canExecute(path); err != nil {
		return fmt.Errorf("is not executable (chmod +x it): %w", err)
	}
	return nil
}

// checkProjectDir says what is wrong with project_dir, or nil.
func checkProjectDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("project_dir %s does not exist (create it, or fix project_dir in the unit's [orchestrator] table)", dir)
	case err != nil:
		return fmt.Errorf("project_dir %s: %v", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("project_dir %s is not a directory (fix project_dir in the unit's [orchestrator] table)", dir)
	}
	return nil
}

// runSession runs the agent and builds its outcome. Every fault is an error session.
func (r *runner) runSession(spec sessionSpec) outcome {
	start := r.opts.Now()
	out := outcome{Session: chain.Session{
		Index:       spec.index,
		HandoffFile: spec.handoffOut,
		StartedAt:   start,
	}}
	fail := func(msg string) outcome {
		out.Status = chain.SessionError
		out.Error = msg
		out.EndedAt = r.opts.Now()
		out.DurationMS = out.EndedAt.Sub(start).Milliseconds()
		return out
	}
	if err := checkProjectDir(spec.dir); err != nil {
		return fail(err.Error())
	}
	argv := spec.call.argv
	path, err := findAgent(argv[0], spec.env)
	if err != nil {
		return fail(err.Error())
	}
	argv = append([]string{path}, argv[1:]...)
	out.Model, out.MaxTurns, out.Command = spec.call.model, spec.call.maxTurns, shellQuote(argv)
	if err := os.Remove(spec.resultPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Sprintf("remove the old result file: %v", err))
	}

	overBudget := make(chan struct{})
	var overOnce sync.Once
	st := newStream(spec.model, func(cost float64) {
		if spec.budget.left >= 0 && cost > spec.budget.left {
			overOnce.Do(func() { close(overBudget) })
		}
	})
	stdout := &outputSink{tail: newTailBuffer(stdoutTail), lines: lineWriter{to: r.opts.Stdout}, feed: &lineFeed{take: st.line}}
	stderr := &outputSink{lines: lineWriter{to: r.opts.Stderr}}
	p, err := startGuarded(r.opts.Executable, argv, spec.dir, spec.env, strings.NewReader(spec.prompt), stdout, stderr)
	if err != nil {
		return fail(fmt.Sprintf("start agent %s: %v", path, err))
	}
	stopProgress := r.progress(st, spec.index)
	var interrupted, budgetHit bool
	select {
	case <-p.exited:
	case <-r.stop.hard:
		interrupted = true
	case <-overBudget:
		interrupted, budgetHit = true, true
	}
	if interrupted {
		grace := maxGrace
		if !budgetHit {
			grace = r.stop.graceTime()
		}
		p.signal(syscall.SIGINT)
		t := time.NewTimer(grace)
		select {
		case <-p.exited:
			t.Stop()
		case <-t.C:
			p.signal(syscall.SIGKILL)
			<-p.exited
		}
	}
	end := r.opts.Now()
	state, waitErr := p.finish()
	stdout.flush()
	stderr.flush()
	prog := stopProgress()
	out.EndedAt = end
	out.DurationMS = end.Sub(start).Milliseconds()
	if waitErr != nil && state == nil {
		return fail(fmt.Sprintf("wait for agent %s: %v", path, waitErr))
	}

	res, found, fileErr := r.result(spec, stdout)
	if found {
		out.SessionID = res.SessionID
		out.Turns = res.Turns
		out.CostUSD = res.CostUSD
		out.InputTokens = res.InputTokens
		out.OutputTokens = res.OutputTokens
		out.HitMaxTurns = res.HitMaxTurns
		if res.DurationMS > 0 {
			out.DurationMS = res.DurationMS
		}
	}
	if !found || (interrupted && prog.CostUSD > out.CostUSD) {
		// No result, or one cut short: what the stream showed was spent all the same.
		if out.SessionID == "" {
			out.SessionID = prog.SessionID
		}
		out.Turns = max(out.Turns, prog.Turns)
		out.CostUSD = max(out.CostUSD, prog.CostUSD)
		out.InputTokens = max(out.InputTokens, prog.InputTokens)
		out.OutputTokens = max(out.OutputTokens, prog.OutputTokens)
	}
	out.HandoffComplete = chain.NonEmptyFile(spec.handoffOut)
	if found && res.HandoffComplete != nil {
		out.HandoffComplete = *res.HandoffComplete
	}
	switch {
	case budgetHit:
		out.Status = chain.SessionInterrupted
		out.Reason = chain.ReasonBudget
		out.Error = fmt.Sprintf("interrupted: its running cost $%.4f passed what the %s left it ($%.4f)", out.CostUSD, spec.budget.which, spec.budget.left)
	case interrupted:
		out.Status = chain.SessionInterrupted
		out.Reason = chain.ReasonStop
		out.Error = "interrupted: " + r.stop.why()
	case !found:
		msg := fmt.Sprintf("agent %s and gave no result", exitText(state))
		if last := stderr.lastLine(); last != "" {
			msg += ": " + last
		} else {
			msg += " (write a JSON result to $" + EnvResult + ", or print a Claude Code result object on stdout)"
		}
		if fileErr != nil {
			msg += "; " + fileErr.Error()
		}
		out.Status = chain.SessionError
		out.Error = msg
	case res.IsError:
		out.Status = chain.SessionError
		out.Error = res.Error
		out.Done = res.Done
	default:
		out.Status = chain.SessionComplete
		out.Done = res.Done
	}
	return out
}

// result reads the session's result: the result file, or else the result object on stdout.
// fileErr says what was wrong with a result file that exists but could not be used.
func (r *runner) result(spec sessionSpec, stdout *outputSink) (res Result, found bool, fileErr error) {
	data, err := os.ReadFile(spec.resultPath)
	switch {
	case err == nil:
		res, err := ParseResultFile(data)
		if err == nil {
			return res, true, nil
		}
		fileErr = fmt.Errorf("result file %s is not a JSON object: %v", spec.resultPath, err)
	case !errors.Is(err, fs.ErrNotExist):
		fileErr = fmt.Errorf("result file %s: %v", spec.resultPath, err)
	}
	tail, partial := stdout.tail.bytes()
	if res, ok := FindClaudeResult(tail, partial); ok {
		return res, true, fileErr
	}
	return Result{}, false, fileErr
}

// exitText describes how the agent's process (its guard, which passes the status on) ended.
func exitText(st *os.ProcessState) string {
	if st == nil {
		return "ended"
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("was killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	code := st.ExitCode()
	if code > 128 && code < 128+65 {
		return fmt.Sprintf("exited with status %d (killed by signal %d, %v)", code, code-128, syscall.Signal(code-128))
	}
	return fmt.Sprintf("exited with status %d", code)
}

// maxStreamLine is the longest stdout line read as stream-json: a message with a large tool
// input (a file written whole) is still counted. A longer line is skipped.
const maxStreamLine = 8 << 20

// lineFeed hands each whole line written to it to take, without its newline; lines over
// maxStreamLine are skipped.
type lineFeed struct {
	take func([]byte)
	buf  []byte
	skip bool // the line under way is too long
}

func (f *lineFeed) write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !f.skip && len(f.buf)+len(chunk) > maxStreamLine {
			f.skip, f.buf = true, nil
		}
		if !f.skip {
			f.buf = append(f.buf, chunk...)
		}
		if i < 0 {
			return
		}
		if !f.skip {
			f.take(f.buf)
		}
		f.buf, f.skip = f.buf[:0], false
		if cap(f.buf) > maxLine {
			f.buf = nil
		}
		p = p[i+1:]
	}
}

// progressEvery is the least time between two session.progress events of a session.
const progressEvery = 250 * time.Millisecond

// progress publishes session.progress events of session index while st changes, at most one per
// progressEvery. The function it returns stops it, publishes the last progress (Done set) and
// returns it.
func (r *runner) progress(st *stream, index int) func() chain.Progress {
	quit, stopped := make(chan struct{}), make(chan struct{})
	var sent uint64
	send := func(done bool) chain.Progress {
		p, seq := st.snapshot()
		p.ChainID, p.Index, p.Done = r.chainID, index, done
		if seq != sent || done {
			sent = seq
			if seq > 0 {
				r.publish(chain.EventProgress, p)
			}
		}
		return p
	}
	go func() {
		defer close(stopped)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				send(false)
			}
		}
	}()
	return func() chain.Progress {
		close(quit)
		<-stopped
		return send(true)
	}
}

// outputSink takes one output stream of a session: it passes whole lines on, keeps the last
// non-blank line, with a tail the last bytes, and with a feed reads the lines as they come.
type outputSink struct {
	tail  *tailBuffer
	lines lineWriter
	feed  *lineFeed // stdout: the agent's stream, read as it comes; written under lines.mu
}

func (o *outputSink) Write(p []byte) (int, error) {
	if o.tail != nil {
		o.tail.Write(p)
	}
	o.lines.write(p)
	if o.feed != nil {
		o.lines.mu.Lock()
		o.feed.write(p)
		o.lines.mu.Unlock()
	}
	return len(p), nil
}

func (o *outputSink) flush() {
	o.lines.flush()
	if o.feed != nil {
		o.lines.mu.Lock()
		if len(o.feed.buf) > 0 && !o.feed.skip {
			o.feed.take(o.feed.buf)
		}
		o.feed.buf = nil
		o.lines.mu.Unlock()
	}
}

func (o *outputSink) lastLine() string {
	o.lines.mu.Lock()
	defer o.lines.mu.Unlock()
	return o.lines.last
}

// lineWriter passes whole lines to to, one Write each, and remembers the last non-blank one.
type lineWriter struct {
	to   io.Writer
	mu   sync.Mutex
	buf  []byte
	last string
}

func (l *lineWriter) write(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxLine - len(l.buf); len(chunk) > room {
			// Too long for one line: pass a piece on.
			l.buf = append(l.buf, chunk[:room]...)
			p = p[room:]
			l.emit()
			continue
		}
		l.buf = append(l.buf, chunk...)
		if i < 0 {
			return
		}
		p = p[i+1:]
		l.emit()
	}
}

// emit passes the buffered line on; mu is held.
func (l *lineWriter) emit() {
	line := l.buf
	if s := strings.TrimSpace(string(line)); s != "" {
		l.last = clip(s, 1000)
	}
	line = append(line, '\n')
	_, _ = l.to.Write(line)
	l.buf = l.buf[:0]
	if cap(l.buf) > maxLine {
		l.buf = nil
	}
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit()
	}
}

// tailBuffer keeps the last size bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte // ring of size bytes once full
	next  int    // where the next byte goes, once full
	full  bool
	total int64
}

func newTailBuffer(size int) *tailBuffer { return &tailBuffer{buf: make([]byte, 0, size)} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	t.total += int64(n)
	size := cap(t.buf)
	if !t.full {
		room := size - len(t.buf)
		if len(p) <= room {
			t.buf = append(t.buf, p...)
			return n, nil
		}
		t.buf = append(t.buf, p[:room]...)
		p = p[room:]
		t.full = true
		t.next = 0
	}
	if len(p) >= size {
		copy(t.buf, p[len(p)-size:])
		t.next = 0
		return n, nil
	}
	c := copy(t.buf[t.next:], p)
	if c < len(p) {
		copy(t.buf, p[c:])
	}
	t.next = (t.next + len(p)) % size
	return n, nil
}

// bytes returns the kept bytes, and whether earlier ones were dropped.
func (t *tailBuffer) bytes() ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.full {
		return slices.Clone(t.buf), false
	}
	out := make([]byte, 0, len(t.buf))
	out = append(out, t.buf[t.next:]...)
	out = append(out, t.buf[:t.next]...)
	return out, t.total > int64(len(t.buf))
}

// guarded is a session's guard process, the leader of the session's process group.
type guarded struct {
	cmd      *exec.Cmd
	lifeline *os.File      // the worker's end of the guard's lifeline: open while the worker lives
	exited   chan struct{} // closed when the guard has exited (it is not reaped yet)
}

// finish kills what is left of the session's group, reaps the guard and closes the lifeline. It
// must be called once p.exited is closed.
func (g *guarded) finish() (*os.ProcessState, error) {
	g.signal(syscall.SIGKILL)
	err := g.cmd.Wait()
	g.lifeline.Close()
	return g.cmd.ProcessState, err
}
