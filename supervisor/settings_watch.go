package supervisor

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/unit"
)

// watchSettings re-reads the settings file (--config) when it changes on disk, and applies what
// changed as PUT /v1/settings does: orchestrator workers waiting for a session lease ask again at
// once, and each new session runs under the new limits. A file that does not load is reported and
// the daemon keeps its settings. It returns the function that stops watching.
func (s *Supervisor) watchSettings(ctx context.Context) (stop func()) {
	path := s.opts.Paths.Config
	if path == "" || !s.opts.Watch {
		return func() {}
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		err = w.Add(filepath.Dir(path))
	}
	if err != nil {
		if w != nil {
			w.Close()
		}
		// No folder, no settings file: the daemon runs on its defaults and
		// there is nothing to say about it.
		if !errors.Is(err, fs.ErrNotExist) {
			s.logf("watch %s: %v (changes to the file apply at the next daemon start)", path, err)
		}
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer w.Close()
		debounce := max(s.opts.Debounce, 50*time.Millisecond)
		var fire <-chan time.Time
		var t *time.Timer
		for {
			select {
			case <-ctx.Done():
				if t != nil {
					t.Stop()
				}
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) != filepath.Clean(path) {
					continue
				}
				if t != nil {
					t.Stop()
				}
				t = time.NewTimer(debounce)
				fire = t.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.logf("watch %s: %v", path, err)
			case <-fire:
				fire = nil
				s.reloadSettings(ctx, path)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// reloadSettings loads the settings file and applies it on the loop if it differs.
func (s *Supervisor) reloadSettings(ctx context.Context, path string) {
	next, err := config.LoadSettings(path)
	if err != nil {
		s.logf("settings: %v (the daemon keeps its settings; fix the file)", err)
		return
	}
	done := make(chan struct{})
	apply := func() {
		defer close(done)
		if reflect.DeepEqual(s.opts.Settings, next) {
			return // the daemon's own write, or no change
		}
		s.applySettings(next)
		s.publish("config.settings", "", 0, map[string]any{"file": path})
		s.settingsChanged()
	}
	select {
	case s.reqs <- apply:
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Unwatch stops watching the unit files and the settings file, for a
// handover. Closing an inotify instance waits for the kernel (a grace
// period, about 10 ms each); the watches are closed off the loop, at once
// and together, and done is closed once they are. An exec would otherwise
// close them itself, and the next process would not run until the kernel
// had finished. rewatch watches again, after a handover that did not
// happen, and reads every unit file again for the changes it missed.
func (s *Supervisor) Unwatch(ctx context.Context) (done <-chan struct{}, rewatch func(), err error) {
	closed := make(chan struct{})
	err = s.do(ctx, func() {
		w, stop := s.watcher, s.stopSettings
		s.watcher, s.stopSettings = nil, func() {}
		var wg sync.WaitGroup
		if w != nil {
			wg.Go(func() { w.Close() })
		}
		if stop != nil {
			wg.Go(stop)
		}
		s.bg.Add(1) // Run waits for the closes
		go func() {
			defer s.bg.Done()
			wg.Wait()
			close(closed)
		}()
	})
	if err != nil {
		return nil, nil, err
	}
	rewatch = func() {
		<-closed
		err := s.do(context.Background(), func() {
			if s.opts.Watch {
				w, err := unit.NewWatcher(s.opts.Paths.Units, s.opts.Debounce)
				if err != nil {
					s.logf("watch %s: %v (live reload off; use opsvc reload)", s.opts.Paths.Units, err)
				} else {
					s.watcher = w
				}
			}
			s.stopSettings = s.watchSettings(s.runCtx)
		})
		if err != nil {
			return // the daemon is stopping
		}
		r := s.loadUnits()
		s.do(context.Background(), func() { s.applyLoad(r, "watch") })
	}
	return closed, rewatch, nil
}
