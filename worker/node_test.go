package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// startNode starts testdata/worker.js under node, skipping the test when node is missing.
func startNode(t *testing.T) *proc {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: the Node.js worker tests need Node.js (any version with process.send)")
	}
	cmd := exec.Command(node, "testdata/worker.js")
	cmd.Env = environWithout(EnvIPCFD, EnvNodeChannelFD, EnvNodeSerialization)
	return startProc(t, cmd, "node-worker", 0)
}

// TestNodeWorker drives a real Node.js worker that knows only process.send and
// process.on('message'): its messages arrive, Node.js-shaped internal messages are ignored, a
// command is answered, and it exits on shutdown.
func TestNodeWorker(t *testing.T) {
	p := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()

	p.next(t, TypeReady)
	p.next(t, TypeHeartbeat)
	if m := p.next(t, TypeStatus); !strings.HasPrefix(m.Text, "node v") {
		t.Fatalf("status %q, want the node version", m.Text)
	}
	var started struct{ PID int }
	if err := json.Unmarshal(p.event(t, "started"), &started); err != nil || started.PID != p.cmd.Process.Pid {
		t.Fatalf("started event pid %d (%v), want %d", started.PID, err, p.cmd.Process.Pid)
	}
	noProblem(t, p.ch) // the {"cmd":"NODE_…"} message was ignored without complaint

	data, err := p.ch.Command(ctx, "echo", json.RawMessage(`{"n":[1,2,3],"s":"é<&>"}`))
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, data, `{"n":[1,2,3],"s":"é<&>"}`)

	_, err = p.ch.Command(ctx, "nope", nil)
	var re *ReplyError
	if !errors.As(err, &re) || re.Text != "unknown command nope" {
		t.Fatalf("command nope: got %v, want the worker's error text", err)
	}

	if err := p.ch.Send(Message{Type: TypeShutdown, DeadlineMS: 2000}); err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, p.event(t, "bye"), `{"deadline_ms":2000}`)
	p.closed(t)
	if err := p.ch.Err(); err != nil {
		t.Fatalf("Err after the worker exited: %v", err)
	}
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("node exit status %d, want 0", code)
	}
}

// TestNodeWorkerOversizedMessage: a message over 1 MiB is reported, the worker is told, and the
// channel goes on working for the next message.
func TestNodeWorkerOversizedMessage(t *testing.T) {
	p := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	p.next(t, TypeReady)
	p.next(t, TypeStatus)
	p.event(t, "started")

	if _, err := p.ch.Command(ctx, "big", json.RawMessage(fmt.Sprintf(`{"size":%d}`, MaxMessage))); err != nil {
		t.Fatal(err)
	}
	problem(t, p.ch, "over the 1048576-byte limit")
	p.event(t, "after-big")
	var told string
	if err := json.Unmarshal(p.event(t, "daemon-error"), &told); err != nil || !strings.Contains(told, "over the 1048576-byte limit") {
		t.Fatalf("the worker was told %q (%v), want the size problem", told, err)
	}

	// Still a working channel in both directions.
	data, err := p.ch.Command(ctx, "echo", json.RawMessage(`"still here"`))
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, data, `"still here"`)
	if err := p.ch.Send(Message{Type: TypeShutdown}); err != nil {
		t.Fatal(err)
	}
	p.event(t, "bye")
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("node exit status %d, want 0", code)
	}
}

// TestNodeWorkerHandle: process.send(message, handle) sends a NODE_HANDLE message with a
// descriptor. opsvc acknowledges it (else Node.js holds back every later message), closes the
// descriptor, reports the problem, and delivers the message itself.
func TestNodeWorkerHandle(t *testing.T) {
	p := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	p.next(t, TypeReady)
	p.next(t, TypeStatus)
	p.event(t, "started")

	fdsBefore := openFDs(t)
	if _, err := p.ch.Command(ctx, "handle", nil); err != nil {
		t.Fatal(err)
	}
	var port struct{ Port int }
	if err := json.Unmarshal(p.event(t, "with-handle"), &port); err != nil || port.Port == 0 {
		t.Fatalf("with-handle event without its port (%v)", err)
	}
	problem(t, p.ch, "Node.js handle")
	p.event(t, "after-handle") // sent only after Node.js had the acknowledgement
	if fds := openFDs(t); fds != fdsBefore {
		t.Fatalf("%d descriptors open after the handle came, %d before: the handle was kept", fds, fdsBefore)
	}
	p.event(t, "daemon-error")

	if err := p.ch.Send(Message{Type: TypeShutdown}); err != nil {
		t.Fatal(err)
	}
	p.event(t, "bye")
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("node exit status %d, want 0", code)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}
