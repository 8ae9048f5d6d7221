package netlimit

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"testing"
)

func TestBusyResponseLength(t *testing.T) {
	if strconv.Itoa(len(busyBody)) != busyLen {
		t.Fatalf("busyLen = %s, body is %d bytes", busyLen, len(busyBody))
	}
}

// TestListenerCap: with a cap of 2, two connections are held, the third is
// answered 503 and closed, and a closed connection's place (closed twice,
// given back once) goes to the next client.
func TestListenerCap(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listener(raw, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	first, second := <-accepted, <-accepted
	defer second.Close()
	third := dial()
	third.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil {
		t.Fatalf("third connection: %v, want a 503 answer", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection: status %d, want 503", resp.StatusCode)
	}
	first.Close()
	first.Close()
	dial()
	c, ok := <-accepted
	if !ok {
		t.Fatal("listener closed")
	}
	c.Close()
	if n := ln.(*limitListener).open.Load(); n != 1 {
		t.Fatalf("%d connections counted open, want 1", n)
	}
}
