package console

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opsvc/opsvc/config"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestListenPolicy(t *testing.T) {
	ctx := context.Background()
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "127.0.0.2:0"} {
		ln, err := Listen(ctx, ListenConfig{Addr: addr})
		if err != nil {
			t.Errorf("Listen(%s) = %v, want a loopback listener", addr, err)
			continue
		}
		ln.Close()
	}
	for _, addr := range []string{"0.0.0.0:7780", ":7780", "[::]:7780", "192.0.2.1:7780"} {
		_, err := Listen(ctx, ListenConfig{Addr: addr})
		want := "listen on " + addr + ": not a loopback address and no TLS (set [control] tls_cert and tls_key, or allow_plaintext = true)"
		if err == nil || err.Error() != want {
			t.Errorf("Listen(%s) = %v, want %q", addr, err, want)
		}
	}
	ln, err := Listen(ctx, ListenConfig{Addr: "0.0.0.0:0", AllowPlaintext: true})
	if err != nil {
		t.Fatalf("allow_plaintext: %v", err)
	}
	ln.Close()
	for _, tc := range []struct{ addr, want string }{
		{"localhost", "listen on localhost: not a HOST:PORT address (e.g. 127.0.0.1:7780)"},
	} {
		if _, err := Listen(ctx, ListenConfig{Addr: tc.addr}); err == nil || err.Error() != tc.want {
			t.Errorf("Listen(%s) = %v, want %q", tc.addr, err, tc.want)
		}
	}
	if _, err := Listen(ctx, ListenConfig{Addr: "0.0.0.0:0", TLSCert: "c.pem"}); err == nil || !strings.Contains(err.Error(), "tls_cert and tls_key go together") {
		t.Errorf("cert without key: %v", err)
	}
	if _, err := Listen(ctx, ListenConfig{Addr: "0.0.0.0:0", TLSCert: "/nonexistent/c.pem", TLSKey: "/nonexistent/k.pem"}); err == nil || !strings.Contains(err.Error(), "load tls_cert and tls_key") {
		t.Errorf("missing certificate files: %v", err)
	}
}

func TestListenConfigFor(t *testing.T) {
	c := config.ControlSettings{Listen: "127.0.0.1:7780", TLSCert: "tls/c.pem", TLSKey: "/abs/k.pem", AllowPlaintext: true}
	lc := ListenConfigFor(c, "", "/etc/opsvc")
	want := ListenConfig{Addr: "127.0.0.1:7780", TLSCert: "/etc/opsvc/tls/c.pem", TLSKey: "/abs/k.pem", AllowPlaintext: true}
	if lc != want {
		t.Errorf("got %+v, want %+v", lc, want)
	}
	if lc := ListenConfigFor(c, "127.0.0.1:0", "/etc/opsvc"); lc.Addr != "127.0.0.1:0" {
		t.Errorf("--listen did not replace listen: %+v", lc)
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// common name.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// Written beside and renamed, as a certificate renewal does.
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{certFile, "CERTIFICATE", der}, {keyFile, "EC PRIVATE KEY", kder}} {
		tmp := f.path + ".new"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// TestListenTLS: with a certificate, a non-loopback address is served over
// TLS, and a renewed certificate is used without a restart.
func TestListenTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "first")
	ln, err := Listen(context.Background(), ListenConfig{Addr: "0.0.0.0:0", TLSCert: cert, TLSKey: key})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("request without TLS")
		}
		io.WriteString(w, "ok")
	}), t.Logf)
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	defer func() { srv.Shutdown(context.Background()); <-done }()
	port := ln.Addr().(*net.TCPAddr).Port
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	peerCN := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" && p != "" {
			t.Errorf("ALPN %q, want http/1.1", p)
		}
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := peerCN(); cn != "first" {
		t.Fatalf("certificate %q, want first", cn)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("body %q", body)
	}
	// Plain HTTP is not served on a TLS listener.
	plain := &http.Client{}
	defer plain.CloseIdleConnections()
	if resp, err := plain.Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP got 200 from the TLS listener")
		}
	}
	// Renewal: newer files are picked up at the next handshake. The
	// modification time must differ; make it so on coarse file systems.
	writeCert(t, dir, "second")
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(cert, later, later)
	os.Chtimes(key, later, later)
	if cn := peerCN(); cn != "second" {
		t.Errorf("after renewal: certificate %q, want second", cn)
	}
}

// TestListenCapsConnections: the TCP listener holds MaxConns connections;
// one more is answered 503 and closed.
func TestListenCapsConnections(t *testing.T) {
	ln, err := Listen(context.Background(), ListenConfig{Addr: "127.0.0.1:0", MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	extra, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	go ln.Accept() // refuses the extra connection, then waits for the close
	extra.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
	if err != nil {
		t.Fatalf("connection past the cap: %v, want a 503 answer", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("connection past the cap: %d, want 503", resp.StatusCode)
	}
}
