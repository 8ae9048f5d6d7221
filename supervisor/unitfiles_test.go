//go:build unix

package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opsvc/opsvc/unit"
)

// TestCredentialRefusesIDsOutOfRange: a numeric user or group that no user
// database knows is taken as an id at start. One past the range would wrap
// around to root, and 4294967295 (-1) means "no change": both would run the
// worker as the daemon's own user.
func TestCredentialRefusesIDsOutOfRange(t *testing.T) {
	for _, svc := range []unit.Service{
		{User: "4294967296"},
		{User: "4294967295"},
		{User: "-1"},
		{User: "99999999999999999999"},
		{Group: "4294967296"},
		{Group: "-1"},
		{User: "65534", Group: "4294967295"},
	} {
		c, err := credential(svc)
		if err == nil || !strings.Contains(err.Error(), "is not a valid id") {
			t.Errorf("credential(user %q, group %q) = %+v, %v; want a refusal", svc.User, svc.Group, c, err)
		}
	}
	c, err := credential(unit.Service{User: "4294967294", Group: "4294967293"})
	if err != nil || c.Uid != 4294967294 || c.Gid != 4294967293 {
		t.Errorf("credential(the largest ids) = %+v, %v", c, err)
	}
}

// TestEnvironmentFileFIFO: a FIFO named in environment_files is refused at
// start without waiting for a writer; the daemon goes on supervising.
func TestEnvironmentFileFIFO(t *testing.T) {
	dir := shortTemp(t)
	fifo := filepath.Join(dir, "env.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, map[string]string{
		"fifo.toml":  "[service]\nexec = [\"/bin/sleep\", \"1000\"]\nrestart = \"no\"\nenvironment_files = [\"" + fifo + "\"]\n",
		"zero.toml":  "[service]\nexec = [\"/bin/sleep\", \"1000\"]\nrestart = \"no\"\nenvironment_files = [\"-/dev/zero\"]\n",
		"other.toml": "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
	})
	h.waitEvent("unit.failed", "fifo")
	h.waitEvent("unit.failed", "zero")
	h.waitEvent("unit.ready", "other") // forked off the loop: after the failures, which need no fork
	for name, want := range map[string]string{"fifo": "is a named pipe (FIFO), not a regular file", "zero": "is a character device, not a regular file"} {
		if us := h.status(name); !strings.Contains(us.LastError, want) {
			t.Errorf("%s: last error %q, want %q", name, us.LastError, want)
		}
	}
	if us := h.status("other"); us.State != Active {
		t.Errorf("other unit is %s, want active", us.State)
	}
	if _, err := os.Stat(fifo); err != nil {
		t.Fatal(err)
	}
}
