// Package cluster connects a daemon to the etcd that the daemons of a fleet
// share: the client, this host's name and key prefix, this host's lease, and
// whether etcd answers right now.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/opsvc/opsvc/config"
)

// Options are what Dial needs besides the [cluster] settings.
type Options struct {
	// Host is the host name %H in node stands for; "" means os.Hostname.
	Host string
	// ConfigDir is where relative TLS and password file names are found
	// (the directory of opsvc.toml).
	ConfigDir string
	// OnHealth, if set, is called from the watching goroutine whenever etcd
	// stops or starts answering. It must not block for long.
	OnHealth func(Health)
	// CheckEvery is how often the watching goroutine asks etcd whether it
	// answers; 0 means a third of the lease TTL, at most 2s.
	CheckEvery time.Duration
}

// Health is whether etcd answers this daemon.
type Health struct {
	Reachable bool      `json:"reachable"`
	Since     time.Time `json:"since"`
	// Err is why etcd does not answer, when it does not.
	Err string `json:"error,omitempty"`
}

// ErrUnreachable is wrapped by the errors of operations refused because etcd
// does not answer.
var ErrUnreachable = errors.New("etcd is unreachable")

// Client is one daemon's connection to the fleet's etcd. It is safe for
// concurrent use.
type Client struct {
	cli      *clientv3.Client
	prefix   string
	node     string
	ttl      time.Duration
	timeout  time.Duration
	onHealth func(Health)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	health  Health
	sess    *concurrency.Session
	onCheck []func(context.Context) // run after each check etcd answered
}

// afterCheck runs f on the watching goroutine after each check that etcd
// answered, with a context that ends at Close.
func (c *Client) afterCheck(f func(context.Context)) {
	c.mu.Lock()
	c.onCheck = append(c.onCheck, f)
	c.mu.Unlock()
}

// Dial connects to etcd with the [cluster] settings and checks, within
// dial_timeout (or ctx, if sooner), that the cluster answers a linearizable
// read. It then watches the connection until Close.
func Dial(ctx context.Context, s config.ClusterSettings, opts Options) (*Client, error) {
	if !s.Enabled() {
		return nil, errors.New("opsvc: connect to etcd: [cluster] etcd lists no endpoint (set etcd = [\"http://HOST:2379\"] in opsvc.toml)")
	}
	host := opts.Host
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("opsvc: connect to etcd: host name: %v (set [cluster] node in opsvc.toml)", err)
		}
		host = h
	}
	node := s.NodeName(host)
	if err := config.CheckNodeName(node); err != nil {
		return nil, fmt.Errorf("opsvc: connect to etcd: node name %q %v (set [cluster] node in opsvc.toml)", node, err)
	}
	ttl, timeout := s.LeaseTTL.D(), s.DialTimeout.D()
	if ttl <= 0 {
		ttl = config.DefaultLeaseTTL
	}
	if timeout <= 0 {
		timeout = config.DefaultDialTimeout
	}
	cfg := clientv3.Config{
		Endpoints:            s.Etcd,
		DialTimeout:          timeout,
		DialKeepAliveTime:    ttl / 2,
		DialKeepAliveTimeout: ttl / 2,
		Logger:               zap.NewNop(),
		AutoSyncInterval:     0,
	}
	for i, e := range cfg.Endpoints {
		cfg.Endpoints[i] = strings.TrimSuffix(e, "/")
	}
	tlsCfg, err := tlsConfig(s, opts.ConfigDir)
	if err != nil {
		return nil, err
	}
	cfg.TLS = tlsCfg
	if s.Username != "" {
		cfg.Username = s.Username
		if s.PasswordFile != "" {
			pw, err := readSmall(resolve(opts.ConfigDir, s.PasswordFile))
			if err != nil {
				return nil, fmt.Errorf("opsvc: connect to etcd: password_file: %v (check [cluster] password_file)", err)
			}
			cfg.Password = strings.TrimRight(string(pw), "\r\n")
		}
	}
	where := strings.Join(s.Etcd, ", ")
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("opsvc: cannot reach etcd at %s: %v (check [cluster] etcd in opsvc.toml and that etcd runs)", where, err)
	}
	cctx, ccancel := context.WithTimeout(ctx, timeout)
	defer ccancel()
	if _, err := cli.Get(cctx, s.Prefix+"/health", clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("opsvc: cannot reach etcd at %s: %v (check [cluster] etcd in opsvc.toml and that etcd runs; dial_timeout is %s)", where, why(err), timeout)
	}
	c := &Client{
		cli:      cli,
		prefix:   s.Prefix,
		node:     node,
		ttl:      ttl,
		timeout:  timeout,
		onHealth: opts.OnHealth,
		health:   Health{Reachable: true, Since: time.Now()},
	}
	if c.prefix == "/" {
		c.prefix = ""
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	every := opts.CheckEvery
	if every <= 0 {
		every = min(ttl/3, 2*time.Second)
	}
	c.wg.Add(1)
	go c.watch(every)
	return c, nil
}

// why makes a context error from a call to etcd readable.
func why(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	return err.Error()
}

func tlsConfig(s config.ClusterSettings, dir string) (*tls.Config, error) {
	https := false
	for _, e := range s.Etcd {
		https = https || strings.HasPrefix(e, "https://")
	}
	if !https && s.TLSCA == "" && s.TLSCert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.TLSCA != "" {
		pem, err := readSmall(resolve(dir, s.TLSCA))
		if err != nil {
			return nil, fmt.Errorf("opsvc: connect to etcd: tls_ca: %v (check [cluster] tls_ca)", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("opsvc: connect to etcd: tls_ca %s holds no PEM certificate (point it at etcd's CA certificate)", s.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if s.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(resolve(dir, s.TLSCert), resolve(dir, s.TLSKey))
		if err != nil {
			return nil, fmt.Errorf("opsvc: connect to etcd: tls_cert/tls_key: %v (check [cluster] tls_cert and tls_key)", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func resolve(dir, name string) string {
	if filepath.IsAbs(name) || dir == "" {
		return name
	}
	return filepath.Join(dir, name)
}

// readSmall reads a key, certificate or password file of at most 1 MiB.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20+1)
	n, err := f.Read(buf)
	for err == nil && n < len(buf) {
		var m int
		m, err = f.Read(buf[n:])
		n += m
	}
	if n > 1<<20 {
		return nil, fmt.Errorf("%s is larger than 1 MiB", path)
	}
	return buf[:n], nil
}

// watch asks etcd every so often whether it answers, and reports changes.
func (c *Client) watch(every time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		// A loaded machine or a leader election can slow one answer down: etcd
		// counts as unreachable only when it does not answer within dial_timeout.
		ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
		_, err := c.cli.Get(ctx, c.prefix+"/health", clientv3.WithCountOnly())
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		c.setHealth(err)
		if err == nil {
			c.mu.Lock()
			hooks := c.onCheck
			c.mu.Unlock()
			for _, f := range hooks {
				f(c.ctx)
			}
		}
	}
}

// setHealth records the outcome of a call to etcd.
func (c *Client) setHealth(err error) {
	c.mu.Lock()
	was := c.health
	switch {
	case err == nil && !was.Reachable:
		c.health = Health{Reachable: true, Since: time.Now()}
	case err != nil && was.Reachable:
		c.health = Health{Reachable: false, Since: time.Now(), Err: why(err)}
	case err != nil:
		c.health.Err = why(err)
	}
	now, changed := c.health, c.health.Reachable != was.Reachable
	c.mu.Unlock()
	if changed && c.onHealth != nil {
		c.onHealth(now)
	}
}

// Health returns whether etcd answered the last check.
func (c *Client) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

// Reachable reports whether etcd answered the last check; when it did not,
// the error wraps ErrUnreachable and says since when and why.
func (c *Client) Reachable() error {
	h := c.Health()
	if h.Reachable {
		return nil
	}
	return fmt.Errorf("%w since %s: %s", ErrUnreachable, h.Since.UTC().Format(time.RFC3339), h.Err)
}

// Etcd returns the etcd client.
func (c *Client) Etcd() *clientv3.Client { return c.cli }

// Node returns this daemon's name in the fleet.
func (c *Client) Node() string { return c.node }

// Prefix returns the fleet's key prefix, without a trailing slash ("" for "/").
func (c *Client) Prefix() string { return c.prefix }

// Key returns the key PREFIX/part/part….
func (c *Client) Key(parts ...string) string { return c.prefix + "/" + strings.Join(parts, "/") }

// LeaseTTL returns how long this host's lease outlives its last keep-alive.
func (c *Client) LeaseTTL() time.Duration { return c.ttl }

// Timeout returns the bound of one call to etcd (dial_timeout).
func (c *Client) Timeout() time.Duration { return c.timeout }

// Session returns this host's etcd session: a lease of LeaseTTL kept alive
// while etcd answers. Keys put with it vanish when the host dies or stays cut
// off from etcd for LeaseTTL. After a session ended (its lease expired during
// an outage), the next call starts a new one. ctx bounds the grant.
func (c *Client) Session(ctx context.Context) (*concurrency.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		select {
		case <-c.sess.Done():
			c.sess = nil
		default:
			return c.sess, nil
		}
	}
	if c.ctx.Err() != nil {
		return nil, errors.New("opsvc: etcd session: the client is closed")
	}
	gctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	g, err := c.cli.Grant(gctx, int64(c.ttl/time.Second))
	if err != nil {
		return nil, fmt.Errorf("opsvc: etcd session: grant a lease: %w: %s", ErrUnreachable, why(err))
	}
	s, err := concurrency.NewSession(c.cli, concurrency.WithLease(g.ID), concurrency.WithContext(c.ctx))
	if err != nil {
		return nil, fmt.Errorf("opsvc: etcd session: %v", err)
	}
	c.sess = s
	return s, nil
}

// Close ends the watching, revokes this host's lease (its keys go at once)
// and closes the connection.
func (c *Client) Close() error {
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	s := c.sess
	c.sess = nil
	c.mu.Unlock()
	if s != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = c.cli.Revoke(ctx, s.Lease())
		cancel()
		s.Close()
	}
	return c.cli.Close()
}
