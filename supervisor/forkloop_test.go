package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opsvc/opsvc/config"
)

// gateRunner's Start waits for a value on gate (after saying so on
// entered), then starts a fake process that runs until signalled.
type gateRunner struct {
	fakeRunner
	entered chan string
	gate    chan struct{}
}

func (r *gateRunner) Start(spec Spec) (Process, error) {
	r.entered <- spec.Unit
	<-r.gate
	return r.fakeRunner.Start(spec)
}

// TestForkOffTheLoop: while a fork is in flight the loop still answers, the
// unit shows as activating, a stop asked meanwhile is carried out once the
// fork is done, and the stop waited for is not answered before that.
func TestForkOffTheLoop(t *testing.T) {
	dir := t.TempDir()
	units := filepath.Join(dir, "units")
	os.MkdirAll(units, 0o755)
	os.WriteFile(filepath.Join(units, "u.toml"), []byte("[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"), 0o644)
	r := &gateRunner{fakeRunner: fakeRunner{exit: -1}, entered: make(chan string, 1), gate: make(chan struct{})}
	sup, err := New(Options{Paths: config.Paths{Units: units, State: dir, Socket: filepath.Join(dir, "s")}, Runner: r, Settings: config.DefaultSettings(), NoNotifySockets: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	select {
	case <-r.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the unit was never forked")
	}
	// The fork is held: the loop answers all the same.
	var state State
	var launching bool
	if err := sup.do(context.Background(), func() {
		rec := sup.units["u"]
		state, launching = rec.State, rec.launch != nil
	}); err != nil {
		t.Fatal(err)
	}
	if state != Activating || !launching {
		t.Fatalf("during the fork: state %s, fork in flight %v; want activating, true", state, launching)
	}
	select {
	case <-sup.Ready():
		t.Fatal("ready before the first pass's forks were done")
	default:
	}
	// A stop asked during the fork, waited for.
	stopped := make(chan error, 1)
	if err := sup.do(context.Background(), func() {
		if code, msg := sup.ask("u", "stop", false, Peer{}); code != 200 {
			t.Errorf("stop: %d %s", code, msg)
		}
		w := sup.await(context.Background(), "u", "stop")
		go func() { stopped <- <-w.reply }()
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("the stop was answered (%v) while the fork was still in flight", err)
	default:
	}
	close(r.gate)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("stop: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stop was never answered")
	}
	<-sup.Ready()
	if err := sup.do(context.Background(), func() { state = sup.units["u"].State }); err != nil {
		t.Fatal(err)
	}
	if state != Inactive {
		t.Errorf("after the stop: %s, want inactive", state)
	}
	if s, _ := r.times(); len(s) != 1 {
		t.Errorf("%d starts, want 1", len(s))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
