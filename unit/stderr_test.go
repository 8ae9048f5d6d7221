package unit

import (
	"strings"
	"testing"
)

// TestStderrSetting: stderr = "stdout" shares stdout's pipe, "stderr" (the
// default) does not; another value is refused; the setting leaves the hash
// of a unit without it as it was.
func TestStderrSetting(t *testing.T) {
	const exec = "[service]\nexec = [\"/bin/sh\"]\n"
	s := mustLoad(t, map[string]string{
		"plain.toml":  exec,
		"own.toml":    exec + "stderr = \"stderr\"\n",
		"shared.toml": exec + "stderr = \"stdout\"\n",
	})
	plain, own, shared := mustUnit(t, s, "plain"), mustUnit(t, s, "own"), mustUnit(t, s, "shared")
	if plain.Service.StderrToStdout || own.Service.StderrToStdout || !shared.Service.StderrToStdout {
		t.Errorf("StderrToStdout: plain %v, own %v, shared %v; want false, false, true",
			plain.Service.StderrToStdout, own.Service.StderrToStdout, shared.Service.StderrToStdout)
	}
	// The same names without the setting: the default hashes as a unit
	// written before the setting existed; "stdout" is a change.
	again := mustLoad(t, map[string]string{"own.toml": exec, "shared.toml": exec})
	if own.Hash != mustUnit(t, again, "own").Hash || shared.Hash == mustUnit(t, again, "shared").Hash {
		t.Errorf("hashes: stderr = \"stderr\" must hash as no setting, stderr = \"stdout\" must not")
	}

	set := mustLoad(t, map[string]string{"bad.toml": exec + "stderr = \"journal\"\n"})
	if p := problemText(set.Problems["bad"]); !strings.Contains(p, `"stderr", "stdout"`) {
		t.Errorf("stderr = \"journal\": problems %q, want the allowed values named", p)
	}
}
