package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCompletionFromDaemon: the completion scripts offer the running
// daemon's unit names after a verb that takes units, and its chain ids after
// chains show, in each shell that is installed.
func TestCompletionFromDaemon(t *testing.T) {
	bash, errBash := exec.LookPath("bash")
	fish, errFish := exec.LookPath("fish")
	if errBash != nil && errFish != nil {
		t.Skip("neither bash nor fish is installed")
	}
	d := startConsoleDaemon(t)
	d.poll("ticker active", func() bool { return d.unit("ticker") == "active" })
	var chainID string
	d.poll("a chain", func() bool {
		var list struct {
			Chains []struct {
				ID string `json:"id"`
			} `json:"chains"`
		}
		if json.Unmarshal([]byte(d.cli("chains", "ls", "--json")), &list) == nil && len(list.Chains) > 0 {
			chainID = list.Chains[0].ID
		}
		return chainID != ""
	})
	complete := func(argv ...string) string {
		t.Helper()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "OPSVC_SOCKET="+d.sock, "NO_COLOR=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", argv[0], err, out)
		}
		return string(out)
	}
	check := func(shell, what, got string, want ...string) {
		t.Helper()
		words := strings.Fields(got)
		for _, w := range want {
			found := false
			for _, g := range words {
				found = found || g == w
			}
			if !found {
				t.Errorf("%s completion of %s offers %q, want %s among them", shell, what, got, w)
			}
		}
	}
	if errBash == nil {
		const fn = `source <(opsvc completion bash); COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _opsvc; echo "${COMPREPLY[@]}"`
		line := func(words string) string { return strings.Replace(fn, "%s", words, 1) }
		check("bash", "opsvc stop", complete(bash, "-c", line(`opsvc stop ""`)), "ticker", "agent@demo")
		check("bash", "opsvc chains show", complete(bash, "-c", line(`opsvc chains show ""`)), chainID)
	}
	if errFish == nil {
		check("fish", "opsvc stop", complete(fish, "-c", `opsvc completion fish | source; complete -C"opsvc stop "`), "ticker", "agent@demo")
		check("fish", "opsvc chains show", complete(fish, "-c", `opsvc completion fish | source; complete -C"opsvc chains show "`), chainID)
	}
}
