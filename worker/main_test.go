package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// childVar names the scenario the re-executed test binary plays as a worker.
const childVar = "OPSVC_WORKER_TEST_CHILD"

// waitFor bounds every wait in these tests; generous, for a loaded two-core machine.
const waitFor = 10 * time.Second

func TestMain(m *testing.M) {
	if name := os.Getenv(childVar); name != "" {
		os.Exit(runChild(name))
	}
	goleak.VerifyTestMain(m)
}

// runChild is the worker side of the re-executed test binary.
func runChild(name string) int {
	switch name {
	case "full":
		return childFull()
	case "eof":
		return childEOF()
	case "noop":
		return childNoop()
	}
	fmt.Fprintf(os.Stderr, "unknown child scenario %q\n", name)
	return 100
}

// childFull goes through the whole protocol: ready, heartbeat, status, event, commands, requests,
// shutdown. Its exit status is 3 after a shutdown, so the parent can tell that path from others.
func childFull() int {
	c, err := Connect()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 10
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 11
	}
	cmds := c.Commands()
	if err := c.Ready(); err != nil {
		return fail(err)
	}
	if err := c.Heartbeat(); err != nil {
		return fail(err)
	}
	if err := c.Status("working"); err != nil {
		return fail(err)
	}
	err = c.Publish("started", map[string]any{
		"unit":       c.Unit(),
		"supervised": c.Supervised(),
		"env":        []string{os.Getenv(EnvIPCFD), os.Getenv(EnvNodeChannelFD), os.Getenv(EnvNodeSerialization)},
	})
	if err != nil {
		return fail(err)
	}
	var asks sync.WaitGroup
	defer asks.Wait()
	for {
		select {
		case cmd := <-cmds:
			switch cmd.Name {
			case "add":
				var a struct{ A, B int }
				var err error
				if uerr := json.Unmarshal(cmd.Args, &a); uerr != nil {
					err = cmd.Reply(nil, uerr)
				} else {
					err = cmd.Reply(map[string]int{"sum": a.A + a.B}, nil)
				}
				if err != nil {
					return fail(err)
				}
			case "ask":
				if err := cmd.Reply(nil, nil); err != nil {
					return fail(err)
				}
				asks.Go(func() { childAsk(c) })
			default:
				if err := cmd.Reply(nil, fmt.Errorf("no command %q", cmd.Name)); err != nil {
					return fail(err)
				}
			}
		case d := <-c.Shutdown():
			asks.Wait()
			if err := c.Publish("bye", map[string]int64{"deadline_ms": d.Milliseconds()}); err != nil {
				return fail(err)
			}
			if err := c.Close(); err != nil {
				return fail(err)
			}
			return 3
		case <-c.Done():
			return fail(errors.New("channel closed before shutdown"))
		}
	}
}

// childAsk makes two requests of the daemon and publishes what came back.
func childAsk(c *Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	data, err := c.Request(ctx, "echo", map[string]string{"q": "hi"})
	c.Publish("answer", map[string]any{"data": data, "err": fmt.Sprint(err)})
	_, err = c.Request(ctx, "deny", nil)
	var re *ReplyError
	if errors.As(err, &re) {
		c.Publish("denied", map[string]string{"op": re.Op, "name": re.Name, "text": re.Text})
	} else {
		c.Publish("denied", map[string]string{"unexpected": fmt.Sprint(err)})
	}
}

// childEOF becomes ready and waits; the default OnEOF must end it when the daemon closes.
func childEOF() int {
	c, err := Connect()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 10
	}
	if err := c.Ready(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 11
	}
	<-c.Shutdown() // never sent: only EOF ends this worker
	return 12
}

// childNoop runs outside opsvc: every method must succeed and do nothing.
func childNoop() int {
	c, err := Connect()
	if err != nil {
		fmt.Println("connect:", err)
		return 10
	}
	var problems []string
	check := func(what string, err error) {
		if err != nil {
			problems = append(problems, what+": "+err.Error())
		}
	}
	check("ready", c.Ready())
	check("heartbeat", c.Heartbeat())
	check("status", c.Status("x"))
	check("publish", c.Publish("e", map[string]int{"n": 1}))
	if _, err := c.Request(context.Background(), "m", nil); !errors.Is(err, ErrNotSupervised) {
		problems = append(problems, fmt.Sprintf("request: got %v, want ErrNotSupervised", err))
	}
	select {
	case <-c.Commands():
		problems = append(problems, "commands delivered something")
	case <-c.Shutdown():
		problems = append(problems, "shutdown fired")
	case <-c.Done():
		problems = append(problems, "done closed")
	default:
	}
	if c.Supervised() || c.Unit() != "" {
		problems = append(problems, "a no-op connection says it is supervised")
	}
	check("close", c.Close())
	if len(problems) > 0 {
		fmt.Println(strings.Join(problems, "\n"))
		return 1
	}
	fmt.Println("ok")
	return 0
}

// syncBuffer collects a child's output while it runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a worker process started on a fresh channel, with its messages pumped into a deep
// queue so that the test can make Command calls without draining Messages itself.
type proc struct {
	ch         *Channel
	cmd        *exec.Cmd
	msgs       chan Message
	stderr     syncBuffer
	exited     chan struct{}
	waitErr    error
	heartbeats int
}

// startProc starts cmd as an IPC worker of unit, with the channel as fd 3.
func startProc(t *testing.T, cmd *exec.Cmd, unit string, heartbeat time.Duration) *proc {
	t.Helper()
	ch, child, err := NewChannel()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{ch: ch, cmd: cmd, msgs: make(chan Message, 10000), exited: make(chan struct{})}
	cmd.Env = append(cmd.Env, ChildEnv(unit, heartbeat)...)
	cmd.ExtraFiles = []*os.File{child}
	cmd.Stderr = &p.stderr
	cmd.SysProcAttr = ownGroup()
	err = cmd.Start()
	child.Close()
	if err != nil {
		ch.Close()
		t.Fatal(err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		for m := range ch.Messages() {
			p.msgs <- m
		}
		close(p.msgs)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			killGroup(cmd.Process.Pid)
			<-p.exited
		}
		ch.Close()
		<-pumped
		if t.Failed() {
			t.Logf("worker stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

// startGo re-executes the test binary as the worker playing scenario.
func startGo(t *testing.T, scenario, unit string, heartbeat time.Duration) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(environWithout(EnvIPCFD, EnvHeartbeatUSEC, EnvNodeChannelFD), childVar+"="+scenario)
	return startProc(t, cmd, unit, heartbeat)
}

// environWithout is os.Environ without the named variables.
func environWithout(names ...string) []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(names, k)
	})
}

// next returns the next message, counting and skipping heartbeats unless typ is TypeHeartbeat, and
// fails unless it is of type typ.
func (p *proc) next(t *testing.T, typ string) Message {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				t.Fatalf("channel closed (err %v) while waiting for %q", p.ch.Err(), typ)
			}
			if m.Type == TypeHeartbeat && typ != TypeHeartbeat {
				p.heartbeats++
				continue
			}
			if m.Type != typ {
				t.Fatalf("got message %+v, want type %q", m, typ)
			}
			return m
		case <-timeout:
			t.Fatalf("no %q message within %v", typ, waitFor)
		}
	}
}

// event waits for the event named name and returns its data.
func (p *proc) event(t *testing.T, name string) json.RawMessage {
	t.Helper()
	m := p.next(t, TypeEvent)
	if m.Name != name {
		t.Fatalf("got event %q (%s), want %q", m.Name, m.Data, name)
	}
	return m.Data
}

// closed waits for Messages to close, ignoring heartbeats; any other message fails the test.
func (p *proc) closed(t *testing.T) {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				return
			}
			if m.Type != TypeHeartbeat {
				t.Fatalf("got message %+v, want the channel to close", m)
			}
		case <-timeout:
			t.Fatalf("channel still open after %v", waitFor)
		}
	}
}

// exitCode waits for the process to exit and returns its status.
func (p *proc) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(waitFor):
		t.Fatalf("worker still running after %v", waitFor)
	}
	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		t.Fatalf("wait: %v", p.waitErr)
	}
	return p.cmd.ProcessState.ExitCode()
}

// problem waits for a problem report containing want.
func problem(t *testing.T, ch *Channel, want string) error {
	t.Helper()
	select {
	case err := <-ch.Problems():
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("problem %q does not contain %q", err, want)
		}
		return err
	case <-time.After(waitFor):
		t.Fatalf("no problem reported within %v (want one containing %q)", waitFor, want)
	}
	return nil
}

// noProblem fails if a problem has been reported.
func noProblem(t *testing.T, ch *Channel) {
	t.Helper()
	select {
	case err := <-ch.Problems():
		t.Fatalf("unexpected problem: %v", err)
	default:
	}
}

// jsonEqual fails unless got and want are the same JSON value.
func jsonEqual(t *testing.T, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("bad JSON %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad wanted JSON %q: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("got %s, want %s", gb, wb)
	}
}
