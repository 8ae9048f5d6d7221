package worker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestGoWorkerProtocol runs a real Go worker through every message of the protocol, in order.
func TestGoWorkerProtocol(t *testing.T) {
	p := startGo(t, "full", "web@1", 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	p.next(t, TypeReady)
	if m := p.next(t, TypeStatus); m.Text != "working" {
		t.Fatalf("status text %q, want %q", m.Text, "working")
	}
	// The worker sees its unit, and has removed the channel variables so its own children do not
	// inherit them.
	jsonEqual(t, p.event(t, "started"), `{"unit":"web@1","supervised":true,"env":["","",""]}`)
	if p.heartbeats < 1 {
		t.Fatalf("got %d heartbeats before the first event, want the worker's explicit one", p.heartbeats)
	}

	data, err := p.ch.Command(ctx, "add", json.RawMessage(`{"a":2,"b":3}`))
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, data, `{"sum":5}`)

	_, err = p.ch.Command(ctx, "nope", nil)
	var re *ReplyError
	if !errors.As(err, &re) || re.Op != "command" || re.Name != "nope" || re.Text != `no command "nope"` {
		t.Fatalf("command nope: got %v, want a *ReplyError with the worker's text", err)
	}

	if data, err := p.ch.Command(ctx, "ask", nil); err != nil || data != nil {
		t.Fatalf("command ask: got %s, %v; want no data, no error", data, err)
	}
	req := p.next(t, TypeRequest)
	if req.Method != "echo" || req.ID == "" {
		t.Fatalf("request %+v, want method echo with an id", req)
	}
	jsonEqual(t, req.Params, `{"q":"hi"}`)
	if err := p.ch.Reply(req.ID, map[string]string{"a": "hello"}, nil); err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, p.event(t, "answer"), `{"data":{"a":"hello"},"err":"<nil>"}`)
	req = p.next(t, TypeRequest)
	if req.Method != "deny" {
		t.Fatalf("request %+v, want method deny", req)
	}
	if err := p.ch.Reply(req.ID, nil, errors.New("denied by the test")); err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, p.event(t, "denied"), `{"op":"request","name":"deny","text":"denied by the test"}`)

	if err := p.ch.Send(Message{Type: TypeShutdown, DeadlineMS: 1500}); err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, p.event(t, "bye"), `{"deadline_ms":1500}`)
	p.closed(t)
	if err := p.ch.Err(); err != nil {
		t.Fatalf("Err after the worker's EOF: %v, want nil", err)
	}
	if code := p.exitCode(t); code != 3 {
		t.Fatalf("worker exit status %d, want 3 (its shutdown path)", code)
	}
	noProblem(t, p.ch)
}

// TestGoWorkerHeartbeatsAndEOF checks the automatic heartbeat, and that a worker whose daemon
// closes the channel exits with status 0 after one line on stderr (the default OnEOF).
func TestGoWorkerHeartbeatsAndEOF(t *testing.T) {
	p := startGo(t, "eof", "tick", 40*time.Millisecond)
	p.next(t, TypeReady)
	for range 3 { // the worker sends none itself: these are automatic
		p.next(t, TypeHeartbeat)
	}
	if err := p.ch.Close(); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("worker exit status %d after EOF, want 0; stderr:\n%s", code, p.stderr.String())
	}
	if got := p.stderr.String(); got != EOFNotice+"\n" {
		t.Fatalf("worker stderr %q, want %q", got, EOFNotice+"\n")
	}
}

// TestNotSupervised starts a Go worker without OPSVC_IPC_FD: a no-op connection and one line.
func TestNotSupervised(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(environWithout(EnvIPCFD, EnvUnit, EnvHeartbeatUSEC), childVar+"=noop")
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("no-op worker: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if got := stdout.String(); got != "ok\n" {
		t.Fatalf("no-op worker reported:\n%s", got)
	}
	if got, want := stderr.String(), NotSupervisedNotice+"\n"; got != want {
		t.Fatalf("stderr %q, want exactly %q", got, want)
	}
}

// TestShellWorkerGarbage: a line that is not JSON is reported and skipped; the next one counts.
func TestShellWorkerGarbage(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	cmd := exec.Command(sh, "-c", `echo garbage >&3; echo '{"type":"ready"}' >&3`)
	p := startProc(t, cmd, "raw", 0)
	err = problem(t, p.ch, "not JSON")
	if !strings.Contains(err.Error(), `"garbage"`) {
		t.Fatalf("problem %q does not quote the line", err)
	}
	p.next(t, TypeReady)
	p.closed(t)
	if err := p.ch.Err(); err != nil {
		t.Fatalf("Err after EOF: %v, want nil", err)
	}
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("sh exit status %d", code)
	}
}

// TestShellWorkerEnvironment checks what the worker process sees.
func TestShellWorkerEnvironment(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on PATH")
	}
	script := `printf '{"type":"status","text":"%s %s %s %s %s"}\n' "$OPSVC_IPC_FD" "$OPSVC_UNIT" "$NODE_CHANNEL_FD" "$NODE_CHANNEL_SERIALIZATION_MODE" "$OPSVC_HEARTBEAT_USEC" >&3`
	cmd := exec.Command(sh, "-c", script)
	cmd.Env = environWithout(EnvIPCFD, EnvUnit, EnvHeartbeatUSEC, EnvNodeChannelFD, EnvNodeSerialization)
	p := startProc(t, cmd, "env@x", 30*time.Second)
	if m := p.next(t, TypeStatus); m.Text != "3 env@x 3 json 30000000" {
		t.Fatalf("worker environment %q, want %q", m.Text, "3 env@x 3 json 30000000")
	}
	p.closed(t)
}
