package unit

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.err from the current output")

// TestGolden validates every testdata/*.toml on its own and compares the
// problems, one per line, with testdata/*.err. Paths are relative to testdata.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".toml")
		t.Run(name, func(t *testing.T) {
			var b strings.Builder
			for _, p := range Validate(file) {
				b.WriteString(strings.ReplaceAll(p.Error(), "testdata"+string(filepath.Separator), ""))
				b.WriteByte('\n')
			}
			got := b.String()
			golden := strings.TrimSuffix(file, ".toml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./unit -run TestGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("Validate(%s) problems differ from %s\n--- got\n%s--- want\n%s", file, golden, got, want)
			}
		})
	}
}
