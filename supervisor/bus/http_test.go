package bus

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveUnix serves b on a real unix socket and returns a client dialling it.
func serveUnix(t *testing.T, b *Bus) (*http.Client, *http.Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "opsvc.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/events", b)
	srv := &http.Server{Handler: mux}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("server shutdown: %v (a handler did not end)", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return &http.Client{Transport: tr}, srv
}

func get(t *testing.T, ctx context.Context, c *http.Client, url string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://opsvc"+url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func publishN(b *Bus, n int, typ, unit string) {
	for range n {
		b.Publish(Event{Type: typ, Unit: unit})
	}
}

func TestHTTPNDJSONStored(t *testing.T) {
	b := openT(t, t.TempDir(), Options{})
	c, _ := serveUnix(t, b)
	publishN(b, 5, "unit.started", "web")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp := get(t, ctx, c, "/v1/events?since=2&follow=0", nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var got []Event
	for line := range strings.Lines(string(body)) {
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, e)
	}
	wantConsecutive(t, got, 3, 5)
	if !strings.HasPrefix(string(body), `{"seq":3,"time":"`) {
		t.Fatalf("body starts %q", body[:min(len(body), 40)])
	}
}

func TestHTTPNDJSONFollow(t *testing.T) {
	b := openT(t, t.TempDir(), Options{})
	c, _ := serveUnix(t, b)
	publishN(b, 5, "unit.started", "web")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := get(t, ctx, c, "/v1/events?since=4&type=unit.*&unit=web", nil)
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	readEvent := func() Event {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended early")
			}
			var e Event
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			return e
		case <-time.After(waitFor):
			t.Fatal("no line")
		}
		return Event{}
	}
	if e := readEvent(); e.Seq != 5 {
		t.Fatalf("first event %+v, want seq 5", e)
	}
	b.Publish(Event{Type: "chain.created", Unit: "web"}) // 6, filtered out
	b.Publish(Event{Type: "unit.stopped", Unit: "db"})   // 7, filtered out
	b.Publish(Event{Type: "unit.stopped", Unit: "web"})  // 8
	if e := readEvent(); e.Seq != 8 || e.Type != "unit.stopped" {
		t.Fatalf("live event %+v, want seq 8 unit.stopped", e)
	}
	cancel() // the handler must end with the request; the cleanup's Shutdown checks it
	for range lines {
	}
}

func TestHTTPSSE(t *testing.T) {
	b := openT(t, t.TempDir(), Options{})
	c, _ := serveUnix(t, b)
	publishN(b, 5, "unit.ready", "web")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp := get(t, ctx, c, "/v1/events?since=1&follow=0", map[string]string{
		"Accept":        "text/event-stream",
		"Last-Event-ID": "3",
	})
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	msgs := strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n")
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want 2 (Last-Event-ID 3 of 5):\n%s", len(msgs), body)
	}
	for i, m := range msgs {
		f := strings.Split(m, "\n")
		if len(f) != 3 || f[0] != "id: "+[]string{"4", "5"}[i] || f[1] != "event: unit.ready" || !strings.HasPrefix(f[2], "data: {") {
			t.Fatalf("message %d = %q", i, m)
		}
		var e Event
		if err := json.Unmarshal([]byte(strings.TrimPrefix(f[2], "data: ")), &e); err != nil || e.Seq != uint64(4+i) {
			t.Fatalf("data of message %d: %+v, %v", i, e, err)
		}
	}
}

func TestHTTPBadRequests(t *testing.T) {
	b := openT(t, t.TempDir(), Options{})
	c, _ := serveUnix(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for _, tc := range []struct {
		url  string
		hdr  map[string]string
		want string
	}{
		{"/v1/events?since=abc", nil, `bad since "abc"`},
		{"/v1/events?since=-1", nil, `bad since "-1"`},
		{"/v1/events", map[string]string{"Accept": "text/event-stream", "Last-Event-ID": "x"}, `bad Last-Event-ID "x"`},
		{"/v1/events?follow=maybe", nil, `bad follow "maybe"`},
	} {
		resp := get(t, ctx, c, tc.url, tc.hdr)
		var body struct{ Error, Hint string }
		err := json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 400 || err != nil || !strings.Contains(body.Error, tc.want) || body.Hint == "" {
			t.Errorf("%s: status %d, body %+v (%v); want 400 with error %q and a hint", tc.url, resp.StatusCode, body, err, tc.want)
		}
	}
}

func TestHTTPEndsOnBusClose(t *testing.T) {
	b, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := serveUnix(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp := get(t, ctx, c, "/v1/events", nil)
	defer resp.Body.Close()
	b.Publish(Event{Type: "daemon.stopping"})
	b.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream did not end cleanly on Bus.Close: %v", err)
	}
	if !strings.Contains(string(body), `"type":"daemon.stopping"`) {
		t.Fatalf("body %q lacks the last event", body)
	}
	resp2 := get(t, ctx, c, "/v1/events", nil)
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Close: status %d, want 503", resp2.StatusCode)
	}
}
