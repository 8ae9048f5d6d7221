package npipe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// onWine reports whether the tests run under wine, which stands in for
// Windows in CI.
func onWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// testName is a pipe name of this test's own.
func testName(t *testing.T) string {
	return fmt.Sprintf(`\\.\pipe\opsvc-test-%d-%s`, os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
}

func listen(t *testing.T, name string) *Listener {
	t.Helper()
	l, err := Listen(name, "")
	if err != nil {
		t.Fatalf("Listen(%s): %v", name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, name string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, name)
	if err != nil {
		t.Fatalf("Dial(%s): %v", name, err)
	}
	return c
}

// echo serves l: each connection gets back each line it sends.
func echo(l net.Listener) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintf(c, "%s\n", sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
	return &wg
}

func TestManyClientsAtOnce(t *testing.T) {
	name := testName(t)
	l := listen(t, name)
	served := echo(l)
	const clients = 40
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := Dial(ctx, name)
			if err != nil {
				errs <- fmt.Errorf("client %d: dial: %v", i, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			rd := bufio.NewReader(c)
			for j := range 5 {
				want := fmt.Sprintf("client %d line %d", i, j)
				if _, err := fmt.Fprintf(c, "%s\n", want); err != nil {
					errs <- fmt.Errorf("client %d: write: %v", i, err)
					return
				}
				got, err := rd.ReadString('\n')
				if err != nil || strings.TrimSpace(got) != want {
					errs <- fmt.Errorf("client %d: read %q, %v; want %q", i, got, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	l.Close()
	served.Wait()
}

func TestHTTPRoundTrip(t *testing.T) {
	name := testName(t)
	l := listen(t, name)
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB: more than the pipe's buffers
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/big" {
				w.Header().Set("Connection", "close")
				io.WriteString(w, big)
				return
			}
			fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return Dial(ctx, name) }}
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for i := range 3 {
		resp, err := client.Get("http://opsvc/v1/units")
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "GET /v1/units" {
			t.Fatalf("GET %d: %q, %v", i, b, err)
		}
	}
	resp, err := client.Get("http://opsvc/big")
	if err != nil {
		t.Fatalf("GET /big: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != big {
		t.Fatalf("GET /big: %d bytes, %v; want %d bytes", len(b), err, len(big))
	}
	tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestCloseWhileAccepting(t *testing.T) {
	name := testName(t)
	l, err := Listen(name, "")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if c != nil {
			c.Close()
		}
		accepted <- err
	}()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Every instance is gone: the name is free again and nobody answers.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := Dial(ctx, name); err == nil {
		c.Close()
		t.Fatal("Dial after Close succeeded")
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Dial after Close: %v, want not exist", err)
	}
	l2 := listen(t, name)
	l2.Close()
}

func TestCloseWithClientsConnected(t *testing.T) {
	name := testName(t)
	l, err := Listen(name, "")
	if err != nil {
		t.Fatal(err)
	}
	// Two clients connect while nobody accepts: the one the listener holds
	// for Accept and the one on the instance it made next.
	var conns []*Conn
	for range 2 {
		conns = append(conns, dial(t, name))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("client %d: read succeeded after the listener closed", i)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("client %d: still connected after the listener closed", i)
		}
		c.Close()
	}
}

func TestSecondListenerRefused(t *testing.T) {
	name := testName(t)
	listen(t, name)
	l2, err := Listen(name, "")
	if err == nil {
		l2.Close()
		t.Fatal("a second listener on the same name was let in")
	}
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen: %v, want ErrInUse", err)
	}
}

func TestDialNobody(t *testing.T) {
	_, err := Dial(context.Background(), testName(t))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Dial with no listener: %v, want not exist", err)
	}
}

func TestSecurityDescriptor(t *testing.T) {
	name := testName(t)
	listen(t, name)
	c := dial(t, name)
	defer c.Close()
	sd, err := windows.GetSecurityInfo(c.h, windows.SE_KERNEL_OBJECT, windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatalf("GetSecurityInfo: %v", err)
	}
	me, err := CurrentUserSID()
	if err != nil {
		t.Fatal(err)
	}
	control, _, err := sd.Control()
	if err != nil {
		t.Fatal(err)
	}
	if control&windows.SE_DACL_PROTECTED == 0 {
		t.Errorf("DACL is not protected from inheritance: %s", sd)
	}
	dacl, _, err := sd.DACL()
	if err != nil || dacl == nil {
		t.Fatalf("DACL: %v (%s)", err, sd)
	}
	want := map[string]bool{"S-1-5-18": true, "S-1-5-32-544": true, me: true}
	got := map[string]bool{}
	for i := range uint32(dacl.AceCount) {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			t.Fatal(err)
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart)).String()
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE {
			t.Errorf("ACE %d for %s is of type %d, want allow", i, sid, ace.Header.AceType)
		}
		const fileAll = 0x1f01ff
		if ace.Mask != windows.GENERIC_ALL && ace.Mask != fileAll {
			t.Errorf("ACE %d for %s grants %#x, want all", i, sid, ace.Mask)
		}
		got[sid] = true
	}
	for sid := range want {
		if !got[sid] {
			t.Errorf("no ACE for %s in %s", sid, sd)
		}
	}
	for sid := range got {
		if !want[sid] {
			t.Errorf("unexpected ACE for %s in %s", sid, sd)
		}
	}
}

func TestRefusedByDescriptor(t *testing.T) {
	if onWine() {
		t.Skip("wine does not check a named pipe's DACL when a client opens it")
	}
	name := testName(t)
	l, err := Listen(name, "D:P(A;;GA;;;SY)") // SYSTEM only
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := Dial(context.Background(), name)
	if err == nil {
		c.Close()
		t.Fatal("a user the descriptor does not name was let in")
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Dial: %v, want permission denied", err)
	}
}

func TestPeer(t *testing.T) {
	name := testName(t)
	l := listen(t, name)
	got := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(got)
			return
		}
		got <- c
	}()
	c := dial(t, name)
	defer c.Close()
	sc, ok := <-got
	if !ok {
		t.Fatal("Accept failed")
	}
	defer sc.Close()
	pid, sid, err := sc.(*Conn).Peer()
	if err != nil {
		t.Fatalf("Peer: %v", err)
	}
	me, _ := CurrentUserSID()
	if int(pid) != os.Getpid() || sid != me {
		t.Fatalf("Peer = %d, %s; want %d, %s", pid, sid, os.Getpid(), me)
	}
}

func TestReadDeadline(t *testing.T) {
	name := testName(t)
	l := listen(t, name)
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		got <- c
	}()
	c := dial(t, name)
	defer c.Close()
	sc := <-got
	if sc == nil {
		t.Fatal("Accept failed")
	}
	defer sc.Close()
	sc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := sc.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past its deadline: %v, want a timeout", err)
	}
	// The connection still works after a timeout.
	sc.SetReadDeadline(time.Time{})
	go fmt.Fprint(c, "x")
	b := make([]byte, 1)
	if _, err := io.ReadFull(sc, b); err != nil || b[0] != 'x' {
		t.Fatalf("Read after the timeout: %q, %v", b, err)
	}
	// The client's closing reads as EOF.
	c.Close()
	if _, err := sc.Read(b); err != io.EOF {
		t.Fatalf("Read after the client closed: %v, want EOF", err)
	}
}
