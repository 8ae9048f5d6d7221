package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// statusProbe asks for the unit list every interval until stop, recording
// each answer's latency and each failure.
type statusProbe struct {
	lat    []time.Duration
	failed int
	lastEr error
}

func (f *fixture) probe(ctx context.Context, stop <-chan struct{}, every time.Duration) *statusProbe {
	p := &statusProbe{}
	for {
		select {
		case <-stop:
			return p
		case <-ctx.Done():
			return p
		default:
		}
		t0 := time.Now()
		if _, err := f.unitList(ctx, 10*time.Second); err != nil {
			p.failed++
			p.lastEr = err
		} else {
			p.lat = append(p.lat, time.Since(t0))
		}
		time.Sleep(every)
	}
}

func (p *statusProbe) quantile(q float64) time.Duration {
	if len(p.lat) == 0 {
		return 0
	}
	s := slices.Clone(p.lat)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// scenarioHostileUnit drops unit files built to make a TOML decoder slow
// (many dotted keys, deeply nested inline tables) into a running daemon.
func scenarioHostileUnit(ctx context.Context, s *suite, r *result) {
	f := s.setup(r, "hostile-unit")
	if f == nil {
		return
	}
	defer f.close()
	f.shellUnit("steady", "sleep 3600 & wait", "", "")
	d := f.startOrFail(ctx, r)
	if d == nil {
		return
	}
	before, err := f.waitUnits(ctx, 10*time.Second, allActive("steady"))
	if err != nil {
		r.fail("steady not active: %v", err)
		return
	}
	var dotted, nested strings.Builder
	dotted.WriteString("[service]\nexec = [\"/bin/true\"]\n[x]\n")
	for i := 0; dotted.Len() < 80<<10; i++ {
		fmt.Fprintf(&dotted, "k%d.a.b.c.d.e.f = %d\n", i, i)
	}
	nested.WriteString("[service]\nexec = [\"/bin/true\"]\nx = ")
	depth := 0
	for nested.Len()+depth < 78<<10 {
		nested.WriteString("{a=")
		depth++
	}
	nested.WriteString("1" + strings.Repeat("}", depth) + "\n")
	r.did = fmt.Sprintf("two hostile unit files dropped into a running daemon: %d KB of dotted keys, %d KB of inline tables nested %d deep", dotted.Len()>>10, nested.Len()>>10, depth)

	stop := make(chan struct{})
	res := make(chan *statusProbe, 1)
	go func() { res <- f.probe(ctx, stop, 25*time.Millisecond) }()
	f.write("hostile-dotted.toml", dotted.String())
	f.write("hostile-nested.toml", nested.String())
	// Meanwhile another unit's worker dies: it must be started again.
	time.Sleep(300 * time.Millisecond)
	old := before["steady"].PID
	syscall.Kill(old, syscall.SIGKILL)
	_, errSteady := f.waitUnits(ctx, 20*time.Second, func(m map[string]unitStatus) bool {
		u := m["steady"]
		return u.PID != 0 && u.PID != old && u.State == "active"
	})
	// The hostile files end refused (an error shown, nothing run).
	m, errRefused := f.waitUnits(ctx, 30*time.Second, func(m map[string]unitStatus) bool {
		for _, n := range []string{"hostile-dotted", "hostile-nested"} {
			if u, ok := m[n]; ok && u.Error == "" && u.LastErr == "" {
				return false
			}
		}
		return true
	})
	time.Sleep(500 * time.Millisecond)
	close(stop)
	p := <-res
	r.check(p.failed == 0 && len(p.lat) > 0, "status answered %d/%d", len(p.lat), len(p.lat)+p.failed)
	if p.failed > 0 {
		r.figure("last status error: %v", p.lastEr)
	}
	r.figure("status latency p50 %s, max %s (reported only)", ms(p.quantile(0.5)), ms(p.quantile(1)))
	r.check(errSteady == nil, "other unit restarted after kill -9")
	r.check(errRefused == nil, "hostile files refused")
	for _, n := range []string{"hostile-dotted", "hostile-nested"} {
		if u, ok := m[n]; ok && u.State == "active" {
			r.fail("%s is active", n)
		}
	}
	// validate answers too, off any daemon.
	t0 := time.Now()
	_, _, code, err := f.cli(ctx, 30*time.Second, "validate", filepath.Join(f.units, "hostile-nested.toml"))
	r.check(err == nil && code == 1, "validate refused it (exit %d) in %s", code, ms(time.Since(t0)))
	r.figure("daemon RSS %d MB", rssKB(d.pid)>>10)
	r.check(d.alive(), "daemon alive")
}

// scenarioFIFO points environment_files at a FIFO that nobody writes.
func scenarioFIFO(ctx context.Context, s *suite, r *result) {
	r.did = "a unit whose environment_files names a FIFO nobody writes, added to a running daemon"
	f := s.setup(r, "fifo-env")
	if f == nil {
		return
	}
	defer f.close()
	fifo := filepath.Join(f.units, "env.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		r.fail("mkfifo: %v", err)
		return
	}
	// Whatever happens, let a reader that blocked on it go at the end.
	defer func() {
		if fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			syscall.Close(fd)
		}
	}()
	f.shellUnit("steady", "sleep 3600 & wait", "", "")
	d := f.startOrFail(ctx, r)
	if d == nil {
		return
	}
	if _, err := f.waitUnits(ctx, 10*time.Second, allActive("steady")); err != nil {
		r.fail("steady not active: %v", err)
	}
	f.shellUnit("fifo", "touch ran; sleep 3600 & wait", "", "environment_files = [\"./env.fifo\"]\n")
	m, err := f.waitUnits(ctx, 20*time.Second, func(m map[string]unitStatus) bool {
		u, ok := m["fifo"]
		return ok && (u.Error != "" || u.LastErr != "" || u.State == "failed")
	})
	u := m["fifo"]
	r.check(err == nil, "refused: %s", firstNonEmpty(u.Error, u.LastErr, u.State, fmt.Sprint(err)))
	// The loop is not wedged: a new unit still starts.
	f.shellUnit("after", "sleep 3600 & wait", "", "")
	_, err = f.waitUnits(ctx, 15*time.Second, allActive("after", "steady"))
	r.check(err == nil, "a unit added afterwards started")
	_, statErr := os.Stat(filepath.Join(f.units, "ran"))
	r.check(os.IsNotExist(statErr), "FIFO unit never ran")
	r.check(d.alive(), "daemon alive")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// scenarioUID gives units uids outside the real range.
func scenarioUID(ctx context.Context, s *suite, r *result) {
	r.did = "units with user = \"4294967296\", \"4294967295\", \"-1\": validate, then a daemon"
	f := s.setup(r, "uid-range")
	if f == nil {
		return
	}
	defer f.close()
	users := map[string]string{"uidwrap": "4294967296", "uidmax": "4294967295", "uidneg": "-1"}
	refused := 0
	for name, uid := range users {
		f.shellUnit(name, "touch ran-"+name+"; sleep 3600 & wait", fmt.Sprintf("user = %q\n", uid), "")
		_, _, code, err := f.cli(ctx, 10*time.Second, "validate", filepath.Join(f.units, name+".toml"))
		if err == nil && code == 1 {
			refused++
		}
	}
	r.check(refused == len(users), "validate refused %d/%d", refused, len(users))
	f.shellUnit("ok", "sleep 3600 & wait", "", "")
	d := f.startOrFail(ctx, r)
	if d == nil {
		return
	}
	ran := 0
	m, err := f.waitUnits(ctx, 15*time.Second, func(m map[string]unitStatus) bool {
		if !allActive("ok")(m) {
			return false
		}
		for name := range users {
			u, ok := m[name]
			_, statErr := os.Stat(filepath.Join(f.units, "ran-"+name))
			if ok && u.Error == "" && u.LastErr == "" && u.State != "failed" && u.State != "active" && statErr != nil {
				return false
			}
		}
		return true
	})
	if err != nil {
		r.fail("daemon did not settle: %v", err)
	}
	for name := range users {
		if _, err := os.Stat(filepath.Join(f.units, "ran-"+name)); err == nil {
			ran++
		} else if m[name].State == "active" {
			ran++
		}
	}
	r.check(ran == 0, "%d of them ran (as root)", ran)
	r.check(d.alive(), "daemon alive")
}

// scenarioNotifyFlood floods a unit's notify socket from a process that is
// not the unit's, and checks that another unit's stored history survives.
func scenarioNotifyFlood(ctx context.Context, s *suite, r *result) {
	if _, err := exec.LookPath("systemd-notify"); err != nil {
		r.skip("systemd-notify is not installed (Debian: systemd)")
		return
	}
	f := s.setup(r, "notify-flood")
	if f == nil {
		return
	}
	defer f.close()
	f.shellUnit("target", "systemd-notify --ready --no-block; sleep 3600 & wait", "type = \"notify\"\n", "")
	f.shellUnit("witness", "sleep 3600 & wait", "", "")
	d := f.startOrFail(ctx, r)
	if d == nil {
		return
	}
	m, err := f.waitUnits(ctx, 15*time.Second, allActive("target", "witness"))
	if err != nil {
		r.fail("units not active: %v", err)
		return
	}
	wit, err := f.storedEvents(ctx, "unit=witness")
	if err != nil || len(wit) == 0 {
		r.fail("witness history: %v (%d events)", err, len(wit))
		return
	}
	all, _ := f.storedEvents(ctx, "since=0")
	var seq0 uint64
	if len(all) > 0 {
		seq0 = all[len(all)-1].Seq
	}
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", m["target"].PID))
	addr := ""
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, "NOTIFY_SOCKET="); ok {
			addr = v
		}
	}
	if addr == "" {
		r.fail("no NOTIFY_SOCKET in the unit's environment")
		return
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		r.fail("dial %s: %v", addr, err)
		return
	}
	window := 10 * time.Second
	if s.opt.short {
		window = 3 * time.Second
	}
	sent, blocked := 0, 0
	payload := []byte("STATUS=" + strings.Repeat("f", 200) + "\nREADY=1")
	t0 := time.Now()
	for time.Since(t0) < window && ctx.Err() == nil {
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Write(payload); err != nil {
			blocked++
			continue
		}
		sent++
	}
	c.Close()
	r.did = fmt.Sprintf("%d datagrams in %s on a notify unit's socket from a process outside the unit", sent, window)
	// Let the daemon catch up, then look at the stored history.
	_, err = f.waitUnits(ctx, 30*time.Second, allActive("target", "witness"))
	r.check(err == nil, "status answered after the flood")
	wit2, err := f.storedEvents(ctx, "unit=witness")
	kept := err == nil && len(wit2) > 0 && wit2[0].Seq == wit[0].Seq
	r.check(kept, "other unit's history kept (%d of %d events)", countSeqs(wit, wit2), len(wit))
	tgt, _ := f.storedEvents(ctx, "unit=target&since="+strconv.FormatUint(seq0, 10))
	bytes := 0
	for _, e := range tgt {
		bytes += e.size
	}
	limit := max(200, sent/100)
	r.check(len(tgt) <= limit, "%d events stored for the flood (%d KB; at most %d)", len(tgt), bytes>>10, limit)
	r.check(d.alive(), "daemon alive")
}

// daemonLogCount counts the lines of the daemon's own log files (STATE/logs/opsvc.log*)
// that contain s, and all their lines.
func (f *fixture) daemonLogCount(s string) (match, lines int) {
	files, _ := filepath.Glob(filepath.Join(f.state, "logs", "opsvc.log*"))
	for _, name := range files {
		fh, err := os.Open(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			lines++
			if strings.Contains(sc.Text(), s) {
				match++
			}
		}
		fh.Close()
	}
	return match, lines
}

func countSeqs(before, after []event) int {
	have := make(map[uint64]bool, len(after))
	for _, e := range after {
		have[e.Seq] = true
	}
	n := 0
	for _, e := range before {
		if have[e.Seq] {
			n++
		}
	}
	return n
}

// scenarioOutputFlood runs a unit that prints without pause beside one that
// prints a timestamp every 50 ms, and follows the second one's lines.
func scenarioOutputFlood(ctx context.Context, s *suite, r *result) {
	window := 6 * time.Second
	if s.opt.short {
		window = 3 * time.Second
	}
	r.did = fmt.Sprintf("a unit printing 500-byte lines without pause beside one printing a line every 50 ms, for %s", window)
	f := s.setup(r, "output-flood")
	if f == nil {
		return
	}
	defer f.close()
	f.shellUnit("spew", "exec yes "+strings.Repeat("x", 500), "", "")
	f.shellUnit("steady", "while :; do date +%%s%%N; sleep 0.05; done", "", "")
	d := f.startOrFail(ctx, r)
	if d == nil {
		return
	}
	if _, err := f.waitUnits(ctx, 10*time.Second, allActive("spew", "steady")); err != nil {
		r.fail("units not active: %v", err)
		return
	}
	d.stderr.watch("drop")
	linesBefore := d.stderr.lineCount()
	fileDrops0, _ := f.daemonLogCount("drop")
	wctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	req, _ := http.NewRequestWithContext(wctx, "GET", "http://opsvc/v1/units/steady/logs?follow=1&n=0", nil)
	resp, err := f.client(0).Do(req)
	if err != nil {
		r.fail("follow logs: %v", err)
		return
	}
	var lat []time.Duration
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var l struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(l.Text), 10, 64)
		if err != nil {
			continue
		}
		lat = append(lat, time.Since(time.Unix(0, ns)))
	}
	resp.Body.Close()
	expected := int(window / (55 * time.Millisecond))
	p := &statusProbe{lat: lat}
	r.check(len(lat) >= expected/4, "other unit's lines delivered %d (about %d printed)", len(lat), expected)
	r.figure("their delay p50 %s, max %s (reported only)", ms(p.quantile(0.5)), ms(p.quantile(1)))
	_, err = f.unitList(ctx, 10*time.Second)
	r.check(err == nil, "status answered")
	r.figure("daemon RSS %d MB", rssKB(d.pid)>>10)
	// The daemon's own log, once it has stopped and said all it had to say.
	d.stop(15 * time.Second)
	fileDrops, flines := f.daemonLogCount("drop")
	drops := d.stderr.count("drop") + fileDrops - fileDrops0
	dlines := d.stderr.lineCount() - linesBefore + flines
	limit := int(window/time.Second)*2 + 10
	r.check(drops <= limit, "%d drop reports in the daemon's log (of %d lines; at most %d)", drops, dlines, limit)
}

// scenarioEventSize makes events as big and as many as a unit can: a unit
// file with thousands of unknown keys, and an ipc worker that publishes
// 900 KB events and then thousands of small ones, beside a quiet unit.
func scenarioEventSize(ctx context.Context, s *suite, r *result) {
	const burst = 20000
	f := s.setup(r, "event-size")
	if f == nil {
		return
	}
	defer f.close()
	f.shellUnit("witness", "sleep 3600 & wait", "", "")
	big := strings.Repeat("e", 900<<10)
	script := fmt.Sprintf(`printf '{"type":"ready"}\n' >&3
i=0; while [ $i -lt 3 ]; do printf '{"type":"event","name":"big","data":"%%s"}\n' %q >&3; printf '{"type":"status","text":"%%s"}\n' %q >&3; i=$((i+1)); done
i=0; while [ $i -lt %d ]; do echo '{"type":"event","name":"small","data":1}'; i=$((i+1)); done >&3
touch published; sleep 3600 & wait`, big, big, burst)
	if err := os.WriteFile(filepath.Join(f.units, "talker.sh"), []byte(script), 0o755); err != nil {
		r.fail("setup: %v", err)
		return
	}
	f.write("talker.toml", fmt.Sprintf("[service]\ntype = \"ipc\"\nexec = [\"/bin/sh\", \"./talker.sh\", %q]\nenvironment = { FAULTS_TOKEN = %q, FAULTS_UNIT = \"talker\" }\n", f.marker("talker"), f.token))
	var bad strings.Builder
	bad.WriteString("[service]\nexec = [\"/bin/true\"]\n")
	for i := 0; bad.Len() < 120<<10; i++ {
		fmt.Fprintf(&bad, "unknown_key_number_%d = %d\n", i, i)
	}
	f.write("badkeys.toml", bad.String())
	r.did = fmt.Sprintf("an ipc worker publishing 3 events and statuses of 900 KB then %d events in a burst; a %d KB unit file of unknown keys", burst, bad.Len()>>10)
	d := f.startOrFail(ctx, r)
	if d == nil {
		return
	}
	if _, err := f.waitUnits(ctx, 15*time.Second, allActive("witness")); err != nil {
		r.fail("witness not active: %v", err)
	}
	wit, _ := f.storedEvents(ctx, "unit=witness")
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(f.units, "published")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err := f.waitUnits(ctx, 30*time.Second, allActive("witness"))
	r.check(err == nil, "status answered")
	evs, err := f.storedEvents(ctx, "since=0")
	if err != nil {
		r.fail("stored events: %v", err)
	}
	biggest, talker := 0, 0
	for _, e := range evs {
		biggest = max(biggest, e.size)
		if e.Unit == "talker" {
			talker++
		}
	}
	r.check(biggest <= 65<<10, "largest stored event %d KB (at most 64 KiB)", biggest>>10)
	r.check(talker <= burst/4, "%d events stored for the talker's %d", talker, burst+6)
	wit2, _ := f.storedEvents(ctx, "unit=witness")
	r.check(len(wit) > 0 && len(wit2) > 0 && wit2[0].Seq == wit[0].Seq, "other unit's history kept")
	out, stderr, code, err := f.cli(ctx, 60*time.Second, "events", "--json")
	lines := strings.Count(out, "\n")
	r.check(err == nil && code == 0, "opsvc events --json read %d events (exit %d%s)", lines, code, said(firstLine(stderr)))
	r.check(d.alive(), "daemon alive")
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// said is ": what it said" when a command said something on stderr.
func said(stderr string) string {
	if t := strings.TrimSpace(stderr); t != "" {
		return ": " + t
	}
	return ""
}
