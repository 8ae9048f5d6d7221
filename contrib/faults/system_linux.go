package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// scenarioDiskFull puts the state directory on a 2 MiB tmpfs and fills it.
func scenarioDiskFull(ctx context.Context, s *suite, r *result) {
	r.did = "state directory on a 2 MiB tmpfs, filled to ENOSPC while units print and restart, then space freed"
	f := s.setup(r, "disk-full")
	if f == nil {
		return
	}
	defer f.close()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", f.state).CombinedOutput(); err != nil {
		r.skip("cannot mount a tmpfs here: %v %s", err, bytes.TrimSpace(out))
		return
	}
	defer func() {
		if err := exec.Command("umount", f.state).Run(); err != nil {
			exec.Command("umount", "-l", f.state).Run()
		}
	}()
	defer f.close() // the daemon must be gone before the umount
	// The daemon's own sd_notify messages, as its service manager would get them.
	nsock := filepath.Join(f.dir, "notify.sock")
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsock, Net: "unixgram"})
	if err != nil {
		r.fail("notify socket: %v", err)
		return
	}
	defer nconn.Close()
	f.env = append(f.env, "NOTIFY_SOCKET="+nsock)
	notifyDegraded := make(chan string, 1)
	go func() {
		buf := make([]byte, 8192)
		for {
			n, err := nconn.Read(buf)
			if err != nil {
				return
			}
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				if strings.HasPrefix(l, "STATUS=") && strings.Contains(strings.ToLower(l), "degraded") {
					select {
					case notifyDegraded <- l:
					default:
					}
				}
			}
		}
	}()
	f.shellUnit("chatty", "while :; do echo line $(date +%%s%%N); sleep 0.02; done", "", "")
	f.shellUnit("blink", "sleep 0.3; exit 1", "restart = \"always\"\nrestart_delay = \"100ms\"\nstart_limit_burst = 10000\n", "")
	d := f.startOrFail(ctx, r)
	if d == nil {
		return
	}
	if _, err := f.waitUnits(ctx, 10*time.Second, allActive("chatty")); err != nil {
		r.fail("units not active: %v", err)
	}
	live, err := f.follow(ctx, "since=0")
	if err != nil {
		r.fail("follow: %v", err)
		return
	}
	var mu sync.Mutex
	var seen []event
	degraded, recovered := make(chan event, 1), make(chan event, 1)
	go func() {
		for e := range live {
			mu.Lock()
			seen = append(seen, e)
			mu.Unlock()
			switch e.Type {
			case "daemon.degraded":
				select {
				case degraded <- e:
				default:
				}
			case "daemon.recovered":
				select {
				case recovered <- e:
				default:
				}
			}
		}
	}()
	filler := filepath.Join(f.state, "filler")
	fill(filler)
	var statusOut string
	select {
	case <-degraded:
		r.figure("daemon.degraded seen")
		statusOut, _, _, _ = f.cli(ctx, 10*time.Second, "status")
		r.check(strings.Contains(strings.ToLower(statusOut), "degraded"), "status says degraded")
		select {
		case <-notifyDegraded:
			r.figure("sd_notify STATUS= says degraded")
		case <-time.After(10 * time.Second):
			r.fail("no sd_notify STATUS= saying degraded within 10 s")
		}
	case <-time.After(20 * time.Second):
		r.fail("no daemon.degraded within 20 s of the disk filling")
	}
	_, err = f.unitList(ctx, 10*time.Second)
	r.check(err == nil, "status answered while full")
	time.Sleep(time.Second) // a second of events while the disk stays full
	os.Remove(filler)
	select {
	case <-recovered:
		r.figure("daemon.recovered seen")
	case <-time.After(30 * time.Second):
		r.fail("no daemon.recovered within 30 s of space returning")
	}
	// Some events after recovery, so that they land on disk.
	time.Sleep(time.Second)
	stored, err := f.storedEvents(ctx, "since=0")
	if err != nil {
		r.fail("stored events: %v", err)
	}
	mu.Lock()
	live2 := slicesClone(seen)
	mu.Unlock()
	silent, marked := silentGaps(stored, live2)
	unstored := 0
	for _, e := range live2 {
		if e.Seq == 0 {
			unstored++
		}
	}
	r.figure("%d events sent live without a seq while full", unstored)
	r.check(silent == 0, "%d seqs handed out live but neither stored nor marked lost (%d marked; %d stored, %d live)", silent, marked, len(stored), len(live2))
	if len(stored) > 0 && len(live2) > 0 {
		r.figure("stored seqs %d–%d, seen live %d–%d", stored[0].Seq, stored[len(stored)-1].Seq, live2[0].Seq, live2[len(live2)-1].Seq)
	}
	gaps, _, disorder := seqGaps(stored)
	r.figure("%d gaps in the stored log, %d out of order", gaps, disorder)
	r.check(d.alive(), "daemon alive")
}

func slicesClone(s []event) []event { return append([]event(nil), s...) }

// fill writes zeros to path until the file system is full.
func fill(path string) {
	fh, err := os.Create(path)
	if err != nil {
		return
	}
	defer fh.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := fh.Write(buf); err != nil {
			return
		}
	}
}

// silentGaps counts the seqs seen live that the stored log neither holds nor
// marks as lost. An event whose data speaks of lost, missing, dropped or a
// gap marks the seqs between the last stored event before it and itself.
// An event sent with seq 0 was given no seq, so it leaves no gap.
func silentGaps(stored, live []event) (silent, marked int) {
	have := make(map[uint64]bool, len(stored))
	for _, e := range stored {
		have[e.Seq] = true
	}
	markedRange := func(seq uint64) bool {
		// the first stored event after seq, and everything it marks
		for i, e := range stored {
			if e.Seq > seq {
				for _, m := range stored[i:min(i+3, len(stored))] {
					d := strings.ToLower(string(m.Data) + m.Type)
					if strings.Contains(d, "lost") || strings.Contains(d, "gap") || strings.Contains(d, "missing") || strings.Contains(d, "dropped") || strings.Contains(d, "unstored") {
						return true
					}
				}
				return false
			}
		}
		return false
	}
	if len(stored) == 0 {
		return len(live), 0
	}
	for _, e := range live {
		// seq 0: handed out as not stored, which a client can tell.
		if e.Seq == 0 || have[e.Seq] || e.Seq > stored[len(stored)-1].Seq {
			continue
		}
		if markedRange(e.Seq) {
			marked++
		} else {
			silent++
		}
	}
	return silent, marked
}

// scenarioFDs opens connections to the control socket until the daemon
// (run with 4096 fds) cannot take more, then asks for status.
func scenarioFDs(ctx context.Context, s *suite, r *result) {
	const limit = 4096
	f := s.setup(r, "fd-exhaustion")
	if f == nil {
		return
	}
	defer f.close()
	f.shellUnit("steady", "sleep 3600 & wait", "", "")
	d, err := f.spawn([]string{"/bin/sh", "-c", fmt.Sprintf("ulimit -n %d && exec \"$@\"", limit), "sh"})
	if err != nil {
		r.fail("start: %v", err)
		return
	}
	if err := f.waitAPI(ctx, d, 20*time.Second); err != nil {
		r.fail("start: %v", err)
		return
	}
	m0, err := f.waitUnits(ctx, 10*time.Second, allActive("steady"))
	if err != nil {
		r.fail("steady not active: %v", err)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	maxFDs := 0
	var dialErr error
	for len(conns) < limit+1024 && ctx.Err() == nil {
		c, err := net.DialTimeout("unix", f.sock, 2*time.Second)
		if err != nil {
			dialErr = err
			break
		}
		conns = append(conns, c)
		if len(conns)%256 == 0 {
			maxFDs = max(maxFDs, fdCount(d.pid))
		}
	}
	maxFDs = max(maxFDs, fdCount(d.pid))
	r.did = fmt.Sprintf("%d idle connections opened on the control socket of a daemon limited to %d fds, held while a unit's worker is killed", len(conns), limit)
	if dialErr != nil {
		r.figure("the next connect failed: %v", dialErr)
	}
	r.check(maxFDs < limit, "daemon fds at most %d of %d", maxFDs, limit)
	// Supervision needs fds too (pipes, the notify socket, the event log).
	old := m0["steady"].PID
	syscall.Kill(old, syscall.SIGKILL)
	t0 := time.Now()
	var statusErr error
	for time.Since(t0) < 30*time.Second {
		if _, statusErr = f.unitList(ctx, 10*time.Second); statusErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.check(statusErr == nil, "status answered while they were held, after %s (reported only)", ms(time.Since(t0)))
	_, err = f.waitUnits(ctx, 30*time.Second, func(m map[string]unitStatus) bool {
		u := m["steady"]
		return u.PID != 0 && u.PID != old && u.State == "active"
	})
	r.check(err == nil, "a worker killed meanwhile was started again")
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	_, err = f.waitUnits(ctx, 20*time.Second, allActive("steady"))
	r.check(err == nil, "status and supervision fine after they closed")
	r.check(d.alive(), "daemon alive")
}

// scenarioBadRequests sends a flood of malformed, oversized and wrong requests.
func scenarioBadRequests(ctx context.Context, s *suite, r *result) {
	n := 2000
	if s.opt.short {
		n = 600
	}
	f := s.setup(r, "bad-requests")
	if f == nil {
		return
	}
	defer f.close()
	f.shellUnit("steady", "sleep 3600 & wait", "", "")
	d := f.startOrFail(ctx, r)
	if d == nil {
		return
	}
	if _, err := f.waitUnits(ctx, 10*time.Second, allActive("steady")); err != nil {
		r.fail("steady not active: %v", err)
	}
	rss0 := rssKB(d.pid)
	big := strings.Repeat("x", 8<<20)
	kinds := []struct {
		name string
		send func() (int, error)
	}{
		{"unknown route", func() (int, error) { return f.do(ctx, "GET", "/v1/nope", nil, 10*time.Second) }},
		{"bad unit name", func() (int, error) { return f.do(ctx, "POST", "/v1/units/..%2f..%2fetc/start", nil, 10*time.Second) }},
		{"no such unit", func() (int, error) { return f.do(ctx, "POST", "/v1/units/nosuch/start", nil, 10*time.Second) }},
		{"bad seq", func() (int, error) { return f.do(ctx, "GET", "/v1/events?since=-1&follow=0", nil, 10*time.Second) }},
		{"bad settings JSON", func() (int, error) {
			return f.do(ctx, "PUT", "/v1/settings", strings.NewReader(`{"orchestrator":{"max_turns":"many"`), 10*time.Second)
		}},
		{"8 MiB body", func() (int, error) {
			return raw(f.sock, fmt.Sprintf("PUT /v1/settings HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(big), big))
		}},
		{"malformed HTTP", func() (int, error) { return raw(f.sock, "GARBAGE \x00\x01\x02\r\n\r\n") }},
		{"2 MiB header", func() (int, error) {
			return raw(f.sock, "GET /v1/units HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("y", 2<<20)+"\r\n\r\n")
		}},
	}
	type tally struct{ x4, x5, other, failed int }
	counts := make([]tally, len(kinds))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				k := i % len(kinds)
				code, err := kinds[k].send()
				mu.Lock()
				switch {
				case err != nil:
					counts[k].failed++
				case code >= 400 && code < 500:
					counts[k].x4++
				case code >= 500:
					counts[k].x5++
				default:
					counts[k].other++
				}
				mu.Unlock()
			}
		}()
	}
	t0 := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	took := time.Since(t0)
	r.did = fmt.Sprintf("%d bad requests from 8 clients (%d kinds: unknown route, bad name, bad JSON, 8 MiB body, malformed HTTP, 2 MiB header, ...)", n, len(kinds))
	total4 := 0
	var bad []string
	for k, c := range counts {
		total4 += c.x4
		if c.x5 > 0 || c.other > 0 || c.failed > 0 {
			bad = append(bad, fmt.Sprintf("%s: %d 5xx, %d 2xx/3xx, %d without an answer", kinds[k].name, c.x5, c.other, c.failed))
		}
	}
	r.check(len(bad) == 0, "4xx for %d/%d", total4, n)
	for _, b := range bad {
		r.fail("%s", b)
	}
	r.figure("in %.1f s", took.Seconds())
	_, err := f.waitUnits(ctx, 10*time.Second, allActive("steady"))
	r.check(err == nil && d.alive(), "daemon healthy afterwards")
	r.figure("RSS %d → %d MB", rss0>>10, rssKB(d.pid)>>10)
}

// raw writes a request as bytes and returns the status code of the answer.
func raw(sock, req string) (int, error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.Copy(c, strings.NewReader(req)) // the server may answer before reading it all
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(c, buf, 12)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, err
	}
	var code int
	if _, err := fmt.Sscanf(string(buf[:n]), "HTTP/1.1 %d", &code); err != nil {
		return 0, fmt.Errorf("not an HTTP answer: %q", buf[:n])
	}
	return code, nil
}
