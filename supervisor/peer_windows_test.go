package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/opsvc/opsvc/supervisor/npipe"
)

// TestPipePeer: a request over the control pipe carries its client's pid
// and user SID (ConnContext), through the connection limit's wrapper, and
// the guard lets the daemon's own user in.
func TestPipePeer(t *testing.T) {
	name := fmt.Sprintf(`\\.\pipe\opsvc-test-peer-%d`, os.Getpid())
	ln, err := npipe.Listen(name, "")
	if err != nil {
		t.Fatal(err)
	}
	s := &Supervisor{}
	srv := NewServer(s.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerOf(r)
		if !ok {
			http.Error(w, "no peer", http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(p.caller())
	})), Limits{}, t.Logf)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	}()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return npipe.Dial(ctx, name) }}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get("http://opsvc/v1/units")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	var got struct {
		UID int    `json:"uid"`
		PID int    `json:"pid"`
		SID string `json:"sid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	me, err := npipe.CurrentUserSID()
	if err != nil {
		t.Fatal(err)
	}
	if got.SID != me || got.PID != os.Getpid() || got.UID != -1 {
		t.Fatalf("caller = %+v, want sid %s, pid %d, uid -1", got, me, os.Getpid())
	}
}
