package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/mgr"
)

// runCLI runs one command line in this process.
func runCLI(args ...string) (code int, stdout, stderr string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var o, e bytes.Buffer
	code = report(run(ctx, args, &o, &e), &e)
	return code, o.String(), e.String()
}

// TestWindowsServiceInstall: `opsvc service install` registers `opsvc
// daemon` with the given paths in the Service Control Manager, a second
// install is refused, and uninstall removes it.
func TestWindowsServiceInstall(t *testing.T) {
	m, err := mgr.Connect()
	if err != nil {
		t.Skipf("no Service Control Manager to talk to: %v", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		t.Skipf("a service %s is installed on this machine already; not touching it", serviceName)
	}
	units, state := `C:\opsvc-test\units`, `C:\opsvc-test\state`
	code, stdout, stderr := runCLI("service", "install", "--units", units, "--state", state)
	if code != 0 {
		t.Fatalf("service install: exit %d: %s%s", code, stdout, stderr)
	}
	defer runCLI("service", "uninstall")
	s, err := m.OpenService(serviceName)
	if err != nil {
		t.Fatalf("the service is not there after install: %v", err)
	}
	cfg, err := serviceConfig(s)
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmdline := windows.UTF16PtrToString(cfg.BinaryPathName)
	for _, want := range []string{" daemon ", "--units " + units, "--state " + state} {
		if !strings.Contains(cmdline, want) {
			t.Errorf("service command line %q lacks %q", cmdline, want)
		}
	}
	if cfg.StartType != windows.SERVICE_AUTO_START {
		t.Errorf("start type %d, want automatic", cfg.StartType)
	}
	if code, _, stderr := runCLI("service", "install"); code != exitFailure || !strings.Contains(stderr, "already installed") {
		t.Errorf("second install: exit %d: %s; want 1, already installed", code, stderr)
	}
	if code, stdout, stderr := runCLI("service", "uninstall"); code != 0 || !strings.Contains(stdout, "removed") {
		t.Fatalf("service uninstall: exit %d: %s%s", code, stdout, stderr)
	}
	if s, err := m.OpenService(serviceName); err == nil {
		s.Close()
		t.Fatal("the service is still there after uninstall")
	}
	if code, _, stderr := runCLI("service", "uninstall"); code != exitFailure || !strings.Contains(stderr, "not installed") {
		t.Errorf("second uninstall: exit %d: %s; want 1, not installed", code, stderr)
	}
}

// serviceConfig reads a service's command line and start type with
// QueryServiceConfig alone (mgr's Config also asks for details wine lacks).
func serviceConfig(s *mgr.Service) (*windows.QUERY_SERVICE_CONFIG, error) {
	var need uint32
	windows.QueryServiceConfig(s.Handle, nil, 0, &need)
	if need == 0 {
		need = 8 << 10
	}
	buf := make([]byte, need)
	cfg := (*windows.QUERY_SERVICE_CONFIG)(unsafe.Pointer(&buf[0]))
	if err := windows.QueryServiceConfig(s.Handle, cfg, need, &need); err != nil {
		return nil, err
	}
	return cfg, nil
}
