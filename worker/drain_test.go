package worker

import (
	"testing"
	"time"
)

// TestNewConnShutdownDrain: a Conn made by NewConn from the worker's end of a channel talks to the
// daemon's end, and ShutdownDrain reports the drain flag of the shutdown once it has fired.
func TestNewConnShutdownDrain(t *testing.T) {
	for _, drain := range []bool{false, true} {
		ch, child, err := NewChannel()
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewConn(child, Options{OnEOF: func() {}})
		if err != nil {
			ch.Close()
			t.Fatal(err)
		}
		if !c.Supervised() || c.Unit() != "" {
			t.Fatalf("NewConn: supervised %v, unit %q; want true, \"\"", c.Supervised(), c.Unit())
		}
		if err := c.Ready(); err != nil {
			t.Fatal(err)
		}
		if m := nextMessage(t, ch); m.Type != TypeReady {
			t.Fatalf("got %+v, want ready", m)
		}
		if c.ShutdownDrain() {
			t.Fatal("ShutdownDrain is true before any shutdown")
		}
		if err := ch.Send(Message{Type: TypeShutdown, DeadlineMS: 700, Drain: drain}); err != nil {
			t.Fatal(err)
		}
		select {
		case d := <-c.Shutdown():
			if d != 700*time.Millisecond {
				t.Fatalf("deadline %v, want 700ms", d)
			}
		case <-time.After(waitFor):
			t.Fatal("no shutdown")
		}
		if got := c.ShutdownDrain(); got != drain {
			t.Fatalf("ShutdownDrain = %v, want %v", got, drain)
		}
		c.Close()
		ch.Close()
	}
	if _, err := NewConn(nil, Options{}); err == nil {
		t.Fatal("NewConn(nil) succeeded")
	}
}
