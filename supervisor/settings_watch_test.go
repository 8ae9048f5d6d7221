//go:build unix

package supervisor

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestSettingsFolderMissing: a daemon whose settings file and its folder do
// not exist runs on its defaults without a word about watching them.
func TestSettingsFolderMissing(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	newHarness(t, map[string]string{}, func(o *Options) {
		o.Paths.Config = filepath.Join(t.TempDir(), "missing", "opsvc.toml")
		o.Logf = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, fmt.Sprintf(format, args...))
		}
	})
	mu.Lock()
	defer mu.Unlock()
	for _, l := range lines {
		if strings.Contains(l, "opsvc.toml") {
			t.Errorf("the daemon spoke of a settings file that does not exist: %s", l)
		}
	}
}
