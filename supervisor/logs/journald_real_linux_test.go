package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const journaldBinary = "/lib/systemd/systemd-journald"

// startJournald runs a systemd-journald namespace instance as a child and returns its socket.
// The only argument journald gets is the namespace: it takes any argv[1] as one.
func startJournald(t *testing.T) (ns, socket string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: journald namespaces live under /run/systemd and /var/log/journal")
	}
	if _, err := os.Stat(journaldBinary); err != nil {
		t.Skipf("%s not installed: %v", journaldBinary, err)
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skipf("journalctl not installed: %v", err)
	}
	mid, err := os.ReadFile("/etc/machine-id")
	if err != nil {
		t.Skipf("no machine id, journald cannot store: %v", err)
	}
	ns = fmt.Sprintf("opsvctest%d", os.Getpid())
	sockDir := "/run/systemd/journal." + ns
	socket = filepath.Join(sockDir, "socket")
	var stderr bytes.Buffer
	cmd := exec.Command(journaldBinary, ns)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", journaldBinary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(waitFor):
			_ = cmd.Process.Kill()
			<-exited
		}
		for _, dir := range []string{
			sockDir,
			filepath.Join("/var/log/journal", strings.TrimSpace(string(mid))+"."+ns),
			filepath.Join("/run/log/journal", strings.TrimSpace(string(mid))+"."+ns),
		} {
			if err := os.RemoveAll(dir); err != nil {
				t.Errorf("clean up: %v", err)
			}
		}
	})
	// journald creates its socket itself and says nothing when it is there: poll, bounded.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitFor)
	for {
		if st, err := os.Stat(socket); err == nil && st.Mode().Type() == fs.ModeSocket {
			return ns, socket
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("journald exited early: %v\n%s", err, stderr.String())
		case <-deadline:
			t.Fatalf("journald made no socket at %s in %v\n%s", socket, waitFor, stderr.String())
		case <-tick.C:
		}
	}
}

func journalctl(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	out, err := exec.CommandContext(ctx, "journalctl", append([]string{"--no-pager"}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("journalctl %v: %v\n%s", args, err, stderr)
	}
	return out
}

// jsonString reads a journalctl -o json value: a string, or an array of bytes for values
// journalctl does not print as text.
func jsonString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		b := make([]byte, len(v))
		for i, x := range v {
			f, _ := x.(float64)
			b[i] = byte(f)
		}
		return string(b)
	}
	return fmt.Sprint(v)
}

func TestRealJournald(t *testing.T) {
	ns, socket := startJournald(t)
	unit := fmt.Sprintf("jtest%d", os.Getpid())

	l, err := New(Options{JournalSocket: socket, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if l.Sink() != SinkJournald {
		t.Fatalf("sink %q, want journald", l.Sink())
	}
	l.Write(Line{Unit: unit, Stream: StreamStdout, Text: "hello from stdout", PID: os.Getpid(),
		Fields: map[string]string{"OPSVC_CHAIN_ID": "chain-1", "OPSVC_SESSION": "0"}})
	l.Write(Line{Unit: unit, Stream: StreamStderr, Text: "trouble on stderr\nsecond line"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// A large entry through a sealed memfd.
	js, err := newJournalSink(socket, 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("m", 256<<10)
	if err := js.write(Line{Unit: unit, Stream: StreamStdout, Text: big}); err != nil {
		t.Fatal(err)
	}
	js.close()
	if d := l.Dropped(); d != 0 {
		t.Fatalf("%d lines dropped", d)
	}

	journalctl(t, "--namespace="+ns, "--sync")
	out := journalctl(t, "--namespace="+ns, "-o", "json", "--all", "OPSVC_UNIT="+unit)
	byStream := make(map[string]map[string]any)
	var bigSeen bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("journalctl line %q: %v", sc.Bytes(), err)
		}
		if jsonString(e["MESSAGE"]) == big {
			bigSeen = true
			continue
		}
		byStream[jsonString(e["OPSVC_STREAM"])] = e
	}
	if !bigSeen {
		t.Errorf("the %d-byte entry sent through a memfd is not in the journal", len(big))
	}
	for stream, want := range map[string]map[string]string{
		StreamStdout: {"MESSAGE": "hello from stdout", "PRIORITY": "6", "SYSLOG_IDENTIFIER": unit, "OPSVC_UNIT": unit,
			"OPSVC_CHAIN_ID": "chain-1", "OPSVC_SESSION": "0", "_NAMESPACE": ns},
		StreamStderr: {"MESSAGE": "trouble on stderr\nsecond line", "PRIORITY": "3", "SYSLOG_IDENTIFIER": unit, "OPSVC_UNIT": unit},
	} {
		e := byStream[stream]
		if e == nil {
			t.Errorf("no %s entry in the journal; journalctl printed:\n%s", stream, out)
			continue
		}
		for k, v := range want {
			if got := jsonString(e[k]); got != v {
				t.Errorf("%s entry: %s = %q, want %q", stream, k, got, v)
			}
		}
	}
}
