package unit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/opsvc/opsvc/unit/regfile"
)

// Bounds of one environment file.
const (
	MaxEnvironmentFileSize = 256 << 10
	MaxEnvironmentLineLen  = 64 << 10
)

// ReadEnvironmentFile reads the file of an environment_files entry: a path,
// with a leading "-" if the file may be missing (then a missing file gives
// no variables and no error). The file holds KEY=VALUE lines, where blank
// lines and lines starting with '#' or ';' are skipped, a leading "export "
// is dropped, and a value may be quoted with ' or ". It refuses anything
// that is not a regular file (a FIFO or a device would block or never end)
// without waiting on it, a file over MaxEnvironmentFileSize bytes and a line
// over MaxEnvironmentLineLen.
func ReadEnvironmentFile(entry string) ([][2]string, error) {
	path, optional := strings.CutPrefix(entry, "-")
	data, err := regfile.ReadFile(path, MaxEnvironmentFileSize)
	if optional && errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		hint := "check that it exists and is readable, or mark it optional with a leading \"-\""
		var nr *regfile.NotRegularError
		var tl *regfile.TooLargeError
		switch {
		case errors.As(err, &nr):
			hint = "environment_files name regular files"
		case errors.As(err, &tl):
			hint = "an environment file holds KEY=VALUE lines; keep it short"
		}
		return nil, fmt.Errorf("unit: environment file %s: %w (%s)", path, unwrapPath(err), hint)
	}
	var out [][2]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxEnvironmentLineLen)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("unit: environment file %s:%d: want KEY=VALUE", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		out = append(out, [2]string{k, v})
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return nil, fmt.Errorf("unit: environment file %s:%d: line longer than %d bytes", path, n+1, MaxEnvironmentLineLen)
	}
	return out, sc.Err()
}
