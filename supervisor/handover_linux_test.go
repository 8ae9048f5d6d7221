package supervisor

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/handover"
)

// TestFreezeThaw hands the workers over and takes them back in the same
// process (what happens when the exec fails): the same processes go on,
// output written meanwhile (a line begun before the freeze, too) and a
// message sent meanwhile are read, a command is answered, and a worker that
// died during the pause has its exit handled.
func TestFreezeThaw(t *testing.T) {
	h := newHarness(t, map[string]string{
		"printer.toml": `[service]
exec = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); printf \"line $i\"; sleep 0.01; echo ' end'; done"]
`,
		"doomed.toml": `[service]
exec = ["/bin/sleep", "1000"]
restart = "always"
`,
		"echo.toml": `[service]
type = "ipc"
exec = ["/bin/sh", "./echo.sh"]
`,
		"echo.sh": `printf '{"type":"ready"}\n' >&3
while IFS= read -r l <&3; do
	case $l in
	*'"command"'*)
		id=$(printf '%s' "$l" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
		printf '{"type":"status","text":"asked"}\n' >&3
		printf '{"type":"reply","id":"%s","ok":true,"data":{"pid":%d}}\n' "$id" $$ >&3 ;;
	*shutdown*) exit 0 ;;
	esac
done
`,
	})
	h.waitEvent("unit.ready", "echo")
	h.waitLog("printer", "line 3 end")
	pids := map[string]int{}
	for _, name := range []string{"printer", "doomed", "echo"} {
		pids[name] = h.status(name).PID
	}
	fr, err := h.sup.Freeze(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"printer:stdout", "printer:stderr", "echo:ipc", "echo:stdout", "doomed:stdout"} {
		if fr.Files[want] == nil {
			t.Errorf("no %s among the files handed over: %v", want, fr.Files.Names())
		}
	}
	var procs int
	for _, u := range fr.Record.Units {
		if u.Proc != nil {
			procs++
			if u.Proc.PID != pids[u.Name] || u.Proc.Start == 0 {
				t.Errorf("%s: recorded %+v, want pid %d with its start time", u.Name, u.Proc, pids[u.Name])
			}
		}
	}
	if procs != 3 {
		t.Errorf("%d workers recorded, want 3", procs)
	}
	// During the pause: a worker dies, another is sent a command (the
	// answer and its status message wait in the socket).
	syscall.Kill(pids["doomed"], syscall.SIGKILL)
	answered := make(chan string, 1)
	go func() {
		_, b := h.do("POST", "/v1/units/echo/command", strings.NewReader(`{"name":"ping"}`))
		answered <- string(b)
	}()
	fr.Thaw()
	select {
	case b := <-answered:
		if !strings.Contains(b, strconv.Itoa(pids["echo"])) {
			t.Errorf("command answered %s, want the pid %d", b, pids["echo"])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the command sent during the pause was not answered after it")
	}
	h.waitEventWhere("unit.status", "echo", func(d map[string]any) bool { return d["text"] == "asked" })
	for deadline := time.Now().Add(20 * time.Second); ; {
		if st := h.status("doomed"); st.PID != 0 && st.PID != pids["doomed"] && st.Restarts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker killed during the pause was not restarted: %+v", h.status("doomed"))
		}
		time.Sleep(10 * time.Millisecond) // polling the unit's state
	}
	if st := h.status("printer"); st.PID != pids["printer"] {
		t.Errorf("printer pid %d, want %d", st.PID, pids["printer"])
	}
	last := 0
	for _, l := range h.logs.Tail("printer", 1000) {
		last++
		if want := "line " + strconv.Itoa(last) + " end"; l.Text != want {
			t.Fatalf("printer line %q, want %q: a line was lost, cut or doubled", l.Text, want)
		}
	}
	h.waitLog("printer", "line "+strconv.Itoa(last+3)+" end")
	if _, err := handover.Encode(fr.Record); err != nil {
		t.Error(err)
	}
}
