package npipe

import "testing"

func TestIsPipeName(t *testing.T) {
	for s, want := range map[string]bool{
		`\\.\pipe\opsvc`:        true,
		`\\.\PIPE\opsvc-a`:      true,
		`//./pipe/opsvc`:        true,
		`\\.\pipe\`:             false,
		`/run/opsvc/opsvc.sock`: false,
		`C:\opsvc\opsvc.sock`:   false,
		``:                      false,
	} {
		if got := IsPipeName(s); got != want {
			t.Errorf("IsPipeName(%q) = %v, want %v", s, got, want)
		}
	}
}
