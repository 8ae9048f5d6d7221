package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/opsvc/opsvc/unit/tomldoc"
)

// TestSettingsHostile: settings files built to take the TOML decoder
// quadratic time and memory are refused before decoding, with the position
// and the limit.
func TestSettingsHostile(t *testing.T) {
	var keys strings.Builder
	keys.WriteString("[orchestrator]\n")
	for i := range 5000 {
		fmt.Fprintf(&keys, "k%d = 1\n", i)
	}
	const hint = " (opsvc.toml has the tables [orchestrator] and [control], with a dozen short keys)"
	for _, tt := range []struct {
		name, data string
		want       []string
	}{
		{"dotted", "[orchestrator]\n" + strings.Repeat("a.", 32000) + "z = 1\n", []string{
			"dotted:2:15: nested too deeply (32002 levels, the limit is 8)" + hint,
			"dotted:2:1013: key too long (64014 bytes, the limit is 1024)" + hint}},
		{"inline", "x = " + strings.Repeat("{a=", 16000) + "1" + strings.Repeat("}", 16000) + "\n", []string{
			"inline:1:27: nested too deeply (16001 levels, the limit is 8)" + hint,
			"inline:1:773: too many tables (16000, the limit is 256)" + hint,
			"inline:1:1539: key too long (32001 bytes, the limit is 1024)" + hint,
			"inline:1:12291: too many keys (16001, the limit is 4096)" + hint}},
		{"keys", keys.String(), []string{"keys:4098:1: too many keys (5000, the limit is 4096)" + hint}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSettings(tt.name, []byte(tt.data))
			if err == nil {
				t.Fatal("parsed without error")
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSettingsTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "opsvc.toml")
	if err := os.WriteFile(path, []byte(strings.Repeat("# padding\n", MaxSettingsSize/10+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadSettings(path)
	want := "config: read settings " + path + ": file too large (262150 bytes, the limit is 262144) (point --config or OPSVC_CONFIG at a short TOML file)"
	if err == nil || err.Error() != want {
		t.Errorf("LoadSettings = %v\nwant %s", err, want)
	}
}

func TestSettingsDecodeTimeout(t *testing.T) {
	err := decodeError("opsvc.toml", "a = 1\n", &tomldoc.TimeoutError{After: 5 * time.Second})
	want := "opsvc.toml:1:1: cannot be parsed: decoding took longer than 5s (opsvc.toml has the tables [orchestrator] and [control], with a dozen short keys)"
	if err == nil || err.Error() != want {
		t.Errorf("decodeError = %v, want %s", err, want)
	}
}

// FuzzParseSettings feeds arbitrary bytes to the settings parser: it must
// never panic, and each problem must carry a position. The seeds are the
// golden inputs and testdata/fuzz/FuzzParseSettings.
func FuzzParseSettings(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.toml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSettings("f.toml", data)
		if err == nil {
			if verr := s.Validate(); verr != nil {
				t.Errorf("parsed settings do not validate: %v", verr)
			}
			return
		}
		for _, e := range unjoin(err) {
			p, ok := e.(*Problem)
			if !ok {
				t.Errorf("not a *Problem: %v", e)
				continue
			}
			if p.File != "f.toml" || p.Line < 1 || p.Col < 1 || p.Msg == "" {
				t.Errorf("malformed problem %#v", p)
			}
		}
	})
}
