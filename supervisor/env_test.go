package supervisor

import (
	"slices"
	"testing"
	"unsafe"

	"github.com/opsvc/opsvc/unit"
)

func TestUnitEnvOrderAndOverrides(t *testing.T) {
	base := []string{"PATH=/bin", "HOME=/root", "BARE", "LANG=C"}
	svc := unit.DefaultService()
	svc.Environment = map[string]string{"HOME": "/srv", "B": "2", "A": "1"}
	got, err := unitEnv(base, svc, map[string]string{"LANG": "C.UTF-8", "OPSVC_X": "y"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"PATH=/bin", "HOME=/srv", "BARE=", "LANG=C.UTF-8", "A=1", "B=2", "OPSVC_X=y"}
	if !slices.Equal(got, want) {
		t.Fatalf("unitEnv = %q, want %q", got, want)
	}
	// A variable inherited as it is shares its bytes with the daemon's environment: a
	// thousand units do not hold a thousand copies of it.
	if unsafe.StringData(got[0]) != unsafe.StringData(base[0]) {
		t.Errorf("PATH was copied, want the inherited string itself")
	}
}
