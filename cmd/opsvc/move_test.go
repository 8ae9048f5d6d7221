package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateWarnsOfFleetUnitsWithoutCluster(t *testing.T) {
	dir := t.TempDir()
	units := filepath.Join(dir, "units")
	os.MkdirAll(units, 0o755)
	os.WriteFile(filepath.Join(units, "web.toml"), []byte("[unit]\nplacement = \"fleet\"\n[service]\nexec = [\"/bin/true\"]\n"), 0o644)
	os.WriteFile(filepath.Join(units, "db.toml"), []byte("[service]\nexec = [\"/bin/true\"]\n"), 0o644)
	cfg := filepath.Join(dir, "opsvc.toml")
	check := func(wantWarning bool) {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"validate", units, "--config", cfg}, &out, &errb); err != nil {
			t.Fatalf("validate: %v\n%s", err, errb.String())
		}
		warned := strings.Contains(errb.String(), `web: placement = "fleet" needs [cluster]`)
		if warned != wantWarning || strings.Contains(errb.String(), "db:") {
			t.Errorf("validate's stderr (want a warning for web: %v):\n%s", wantWarning, errb.String())
		}
	}
	check(true) // no opsvc.toml
	os.WriteFile(cfg, []byte("[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n"), 0o644)
	check(false)
}
