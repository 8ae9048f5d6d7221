package main

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opsvc/opsvc/supervisor"
)

// verb runs start, stop or restart on units named or matched by globs.
func (c *cli) verb(verb string) error {
	if len(c.args.pos) == 0 && !c.args.has("all") {
		return fail(exitUsage, "%s: name at least one unit or pattern (opsvc list shows them)", verb)
	}
	names, err := c.expand(verb, c.args.pos)
	if err != nil {
		return err
	}
	q := url.Values{}
	wait := !c.args.has("no-wait")
	if wait {
		q.Set("wait", "1")
	}
	if c.args.has("drain") {
		q.Set("drain", "1")
	}
	// Every unit is asked at once (the daemon orders what depends on what),
	// then the answers are reported in the order given.
	errs := make([]error, len(names))
	pending := newPendingSet(names)
	sem := make(chan struct{}, 1024)
	c.http() // made once, shared by the requests
	stopProgress := func() {}
	if wait && isTerminal(c.stderr) {
		stopProgress = c.progress(verb, pending)
	}
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pending.done(name)
			sem <- struct{}{}
			defer func() { <-sem }()
			err := c.call("POST", "/v1/units/"+url.PathEscape(name)+"/"+verb, q, nil, nil)
			switch {
			case err == nil:
			case codeFor(err) == exitNoUnit:
				errs[i] = noUnit(verb, name)
			case codeFor(err) == exitUsage:
				errs[i] = fail(exitUsage, "%s %s: %v", verb, name, err)
			default:
				errs[i] = asExit(verb+" "+name, err)
			}
		}()
	}
	wg.Wait()
	stopProgress()
	var first error
	for _, err := range errs {
		ee, ok := err.(*exitError)
		if !ok {
			continue
		}
		fmt.Fprintln(c.stderr, "opsvc: "+ee.msg)
		if first == nil {
			first = &exitError{code: ee.code}
		}
		if strings.Contains(ee.msg, "cannot reach") || strings.Contains(ee.msg, "may not use") {
			break // once is enough
		}
	}
	return first
}

// pendingSet is the units a verb still waits for.
type pendingSet struct {
	mu    sync.Mutex
	names map[string]bool
	total int
}

func newPendingSet(names []string) *pendingSet {
	p := &pendingSet{names: map[string]bool{}, total: len(names)}
	for _, n := range names {
		p.names[n] = true
	}
	return p
}

func (p *pendingSet) done(name string) {
	p.mu.Lock()
	delete(p.names, name)
	p.mu.Unlock()
}

func (p *pendingSet) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.names))
	for n := range p.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// progress shows, on a terminal, a line for a start or stop that takes
// longer than a second: "stopping 3 units… web (sending SIGKILL in 7s)".
// The returned function clears it.
func (c *cli) progress(verb string, p *pendingSet) func() {
	quit := make(chan struct{})
	finished := make(chan struct{})
	gerund := map[string]string{"start": "starting", "stop": "stopping", "restart": "restarting"}[verb]
	go func() {
		defer close(finished)
		shown := false
		defer func() {
			if shown {
				fmt.Fprint(c.stderr, "\r\x1b[K")
			}
		}()
		timer := time.NewTimer(time.Second)
		defer timer.Stop()
		select {
		case <-quit:
			return
		case <-timer.C:
		}
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		timeouts := map[string]time.Duration{}
		for {
			left := p.list()
			if len(left) == 0 {
				return
			}
			line := fmt.Sprintf("%s %d unit%s… %s", gerund, p.total, plural(p.total), c.progressDetail(verb, left, timeouts))
			fmt.Fprint(c.stderr, "\r\x1b[K"+line)
			shown = true
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// progressDetail names the first unit still waited for and what it waits on.
func (c *cli) progressDetail(verb string, left []string, timeouts map[string]time.Duration) string {
	name := left[0]
	more := ""
	if len(left) > 1 {
		more = fmt.Sprintf(" and %d more", len(left)-1)
	}
	var us unitStatus
	if err := c.call("GET", "/v1/units/"+url.PathEscape(name), nil, nil, &us); err != nil {
		return name + more
	}
	detail := us.State.String()
	if us.State == supervisor.Deactivating && !us.Since.IsZero() {
		to, ok := timeouts[name]
		if !ok {
			to = c.stopTimeout(name)
			timeouts[name] = to
		}
		if to > 0 {
			rest := to - time.Since(us.Since)
			if rest < 0 {
				rest = 0
			}
			detail = fmt.Sprintf("sending SIGKILL in %ds", int(rest.Round(time.Second).Seconds()))
		}
	} else if us.Blocked != "" {
		detail = us.Blocked
	} else if !us.Since.IsZero() {
		detail = fmt.Sprintf("%s for %ds", us.State, int(time.Since(us.Since).Seconds()))
	}
	return fmt.Sprintf("%s (%s)%s", name, detail, more)
}

// stopTimeout reads a unit's stop_timeout from its definition; 0 if unknown.
func (c *cli) stopTimeout(name string) time.Duration {
	defs, err := c.definition(name)
	if err != nil {
		return 0
	}
	for _, d := range defs {
		if d.Table == "service" && d.Key == "stop_timeout" {
			v := strings.Trim(d.Value, `"`)
			if dur, err := time.ParseDuration(v); err == nil {
				return dur
			}
			if n, err := strconv.Atoi(v); err == nil {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}
