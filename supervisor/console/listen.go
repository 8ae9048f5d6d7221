package console

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opsvc/opsvc/config"
	"github.com/opsvc/opsvc/supervisor/netlimit"
)

// DefaultMaxConns caps the open connections of the TCP listener.
const DefaultMaxConns = 256

// ListenConfig is what Listen needs.
type ListenConfig struct {
	Addr           string // host:port; port 0 picks a free one
	TLSCert        string // PEM files; both or neither
	TLSKey         string
	AllowPlaintext bool // serve plain HTTP on an address that is not loopback
	MaxConns       int  // default DefaultMaxConns
}

// ListenConfigFor returns the listener settings of [control]; addr, when not
// empty, replaces listen (opsvc daemon --listen). Relative certificate paths
// are taken relative to dir, the directory of opsvc.toml.
func ListenConfigFor(c config.ControlSettings, addr, dir string) ListenConfig {
	lc := ListenConfig{Addr: c.Listen, TLSCert: c.TLSCert, TLSKey: c.TLSKey, AllowPlaintext: c.AllowPlaintext}
	if addr != "" {
		lc.Addr = addr
	}
	for _, p := range []*string{&lc.TLSCert, &lc.TLSKey} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return lc
}

// TLS reports whether the listener serves HTTPS.
func (lc ListenConfig) TLS() bool { return lc.TLSCert != "" || lc.TLSKey != "" }

// Listen opens the TCP listener: on a loopback address as it is; on any
// other address only with TLS (then every connection is TLS) or with
// AllowPlaintext. Host names are resolved, and all their addresses must be
// loopback. The listener holds at most MaxConns connections at once.
func Listen(ctx context.Context, lc ListenConfig) (net.Listener, error) {
	host, _, err := net.SplitHostPort(lc.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: not a HOST:PORT address (e.g. 127.0.0.1:7780)", lc.Addr)
	}
	if lc.TLSCert == "" != (lc.TLSKey == "") {
		return nil, fmt.Errorf("listen on %s: tls_cert and tls_key go together (set both, or neither)", lc.Addr)
	}
	var certs *certSource
	if lc.TLS() {
		if certs, err = loadCerts(lc.TLSCert, lc.TLSKey); err != nil {
			return nil, fmt.Errorf("listen on %s: %w", lc.Addr, err)
		}
	} else if !lc.AllowPlaintext {
		loop, err := isLoopback(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", lc.Addr, err)
		}
		if !loop {
			return nil, fmt.Errorf("listen on %s: not a loopback address and no TLS (set [control] tls_cert and tls_key, or allow_plaintext = true)", lc.Addr)
		}
	}
	var lcfg net.ListenConfig
	ln, err := lcfg.Listen(ctx, "tcp", lc.Addr)
	if err != nil {
		return nil, err // *net.OpError: "listen tcp ADDR: …"
	}
	conns := lc.MaxConns
	if conns <= 0 {
		conns = DefaultMaxConns
	}
	ln = netlimit.Listener(ln, conns)
	if certs != nil {
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"http/1.1"}, // WebSockets need HTTP/1.1
			GetCertificate: certs.get,
		})
	}
	return ln, nil
}

// isLoopback reports whether host names only loopback addresses. "" and
// unspecified addresses (0.0.0.0, ::) listen on every interface.
func isLoopback(ctx context.Context, host string) (bool, error) {
	if host == "" {
		return false, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return false, fmt.Errorf("resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return false, nil
		}
	}
	return len(addrs) > 0, nil
}

// certSource serves the certificate in the PEM files, loading it again when
// a file changes (a renewed certificate needs no restart). A renewal that
// does not load keeps the previous certificate.
type certSource struct {
	cert, key string
	mu        sync.Mutex
	stamp     [2]time.Time
	current   *tls.Certificate
}

func loadCerts(cert, key string) (*certSource, error) {
	cs := &certSource{cert: cert, key: key}
	if err := cs.reload(); err != nil {
		return nil, err
	}
	return cs, nil
}

func (cs *certSource) stamps() ([2]time.Time, error) {
	var st [2]time.Time
	for i, p := range []string{cs.cert, cs.key} {
		fi, err := os.Stat(p)
		if err != nil {
			return st, err
		}
		st[i] = fi.ModTime()
	}
	return st, nil
}

func (cs *certSource) reload() error {
	st, err := cs.stamps()
	if err != nil {
		return fmt.Errorf("load tls_cert and tls_key: %w", err)
	}
	c, err := tls.LoadX509KeyPair(cs.cert, cs.key)
	if err != nil {
		return fmt.Errorf("load tls_cert and tls_key: %w", err)
	}
	cs.current, cs.stamp = &c, st
	return nil
}

func (cs *certSource) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if st, err := cs.stamps(); err == nil && st != cs.stamp {
		_ = cs.reload() // on error the previous certificate stays
	}
	return cs.current, nil
}
