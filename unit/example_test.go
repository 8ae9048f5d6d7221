package unit_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing/fstest"

	"github.com/opsvc/opsvc/unit"
)

// Load reads a units directory: every valid unit, with its drop-ins
// applied, and for each invalid file its problems, all at once.
func ExampleLoad() {
	dir, err := os.MkdirTemp("", "units")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "web.toml"), []byte(`
[unit]
description = "Web frontend"

[service]
exec = ["/bin/echo", "serving"]
restart = "always"
`), 0o644)
	os.Mkdir(filepath.Join(dir, "web.d"), 0o755)
	os.WriteFile(filepath.Join(dir, "web.d", "port.toml"), []byte(`
[service]
exec = ["on port 8080"] # a later array appends
`), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.toml"), []byte(`
[service]
exec = ["/bin/true"]
restart = "sometimes"
`), 0o644)

	set, err := unit.Load(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	web := set.Units["web"]
	fmt.Println(web.Name, "-", web.Description)
	fmt.Println(web.Service.Exec, web.Service.Restart)
	fmt.Println(len(web.Sources), "files")
	for _, p := range set.Problems["bad"] {
		fmt.Println(filepath.Base(p.File), p.Line)
	}
	// Output:
	// web - Web frontend
	// [/bin/echo serving on port 8080] always
	// 2 files
	// bad.toml 4
}

// LoadFS reads units from any file system, here one in memory; a template
// makes instances by name.
func ExampleLoadFS() {
	fsys := fstest.MapFS{
		"tick@.toml":  {Data: []byte("[service]\nexec = [\"/bin/echo\", \"%i\"]\n")},
		"tick@a.toml": {Data: []byte("")},
	}
	set, err := unit.LoadFS(fsys, "/etc/opsvc/units")
	if err != nil {
		fmt.Println(err)
		return
	}
	var names []string
	for name := range set.Units {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Println(names)
	b, err := set.Instance("tick@b")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.Service.Exec)
	// Output:
	// [tick@a]
	// [/bin/echo b]
}
