package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ClusterSettings is the [cluster] table: the etcd that the daemons of a
// fleet share. With no etcd endpoint the daemon is a single host and keeps
// its registry and leases in files, as without the table.
type ClusterSettings struct {
	// Etcd are the client URLs of the etcd cluster ("http://10.0.0.1:2379").
	Etcd []string `json:"etcd" toml:"etcd"`
	// Prefix is the key prefix of this fleet, so several fleets may share an etcd.
	Prefix string `json:"prefix" toml:"prefix"`
	// Node is this daemon's name in the fleet; %H stands for the host name.
	Node string `json:"node" toml:"node"`
	// TLSCA, TLSCert and TLSKey are PEM files (relative to the directory of
	// opsvc.toml): the CA that signed etcd's certificate, and this client's
	// certificate and key (both or neither).
	TLSCA   string `json:"tls_ca" toml:"tls_ca"`
	TLSCert string `json:"tls_cert" toml:"tls_cert"`
	TLSKey  string `json:"tls_key" toml:"tls_key"`
	// Username and PasswordFile log in to etcd; the file holds the password
	// (a trailing newline is dropped).
	Username     string `json:"username" toml:"username"`
	PasswordFile string `json:"password_file" toml:"password_file"`
	// LeaseTTL is how long a host's leases outlive it: its session slots and
	// the units it runs for the fleet are free again that long after it was
	// last heard of.
	LeaseTTL Duration `json:"lease_ttl" toml:"lease_ttl"`
	// DialTimeout bounds connecting to etcd; the daemon refuses to start when
	// etcd does not answer within it.
	DialTimeout Duration `json:"dial_timeout" toml:"dial_timeout"`
}

// Bounds and defaults of [cluster].
const (
	DefaultClusterPrefix = "/opsvc"
	DefaultLeaseTTL      = 10 * time.Second
	MinLeaseTTL          = 2 * time.Second
	MaxLeaseTTL          = 5 * time.Minute
	DefaultDialTimeout   = 5 * time.Second
	MinDialTimeout       = 100 * time.Millisecond
	MaxDialTimeout       = time.Minute
	maxNodeName          = 64
	maxPrefix            = 128
	maxEndpoints         = 16
)

func defaultCluster() ClusterSettings {
	return ClusterSettings{
		Etcd:        []string{},
		Prefix:      DefaultClusterPrefix,
		Node:        "%H",
		LeaseTTL:    Duration(DefaultLeaseTTL),
		DialTimeout: Duration(DefaultDialTimeout),
	}
}

// Enabled reports whether the daemon is one host of a fleet on etcd.
func (c ClusterSettings) Enabled() bool { return len(c.Etcd) > 0 }

// NodeName returns Node with %H replaced by host (the host name); "%%" is a
// percent sign.
func (c ClusterSettings) NodeName(host string) string {
	var b strings.Builder
	s := c.Node
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case 'H':
			b.WriteString(host)
			i++
		case '%':
			b.WriteByte('%')
			i++
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// CheckNodeName returns why name cannot name a host of a fleet, or nil.
func CheckNodeName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("is empty")
	case len(name) > maxNodeName:
		return fmt.Errorf("is longer than %d bytes", maxNodeName)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("has %q; use letters, digits, '-', '_' and '.'", r)
		}
	}
	return nil
}

// checkCluster adds the problems of [cluster].
func (c ClusterSettings) check(add func(key, msg, hint string, more ...string)) {
	if len(c.Etcd) > maxEndpoints {
		add("cluster.etcd", fmt.Sprintf("cluster.etcd lists %d endpoints", len(c.Etcd)), fmt.Sprintf("allowed: up to %d", maxEndpoints))
	}
	for _, e := range c.Etcd {
		if err := checkEndpoint(e); err != nil {
			add("cluster.etcd", fmt.Sprintf("cluster.etcd has %q: %v", e, err), `write URLs such as "http://127.0.0.1:2379"`)
			break
		}
	}
	switch {
	case c.Prefix == "" || c.Prefix[0] != '/':
		add("cluster.prefix", fmt.Sprintf("cluster.prefix %q does not start with /", c.Prefix), `e.g. prefix = "/opsvc"`)
	case len(c.Prefix) > maxPrefix:
		add("cluster.prefix", "cluster.prefix is too long", fmt.Sprintf("allowed: up to %d bytes", maxPrefix))
	case len(c.Prefix) > 1 && strings.HasSuffix(c.Prefix, "/"):
		add("cluster.prefix", fmt.Sprintf("cluster.prefix %q ends with /", c.Prefix), "drop the trailing /")
	case strings.ContainsAny(c.Prefix, " \t\r\n\x00"):
		add("cluster.prefix", fmt.Sprintf("cluster.prefix %q has a space or control character", c.Prefix), `e.g. prefix = "/opsvc"`)
	}
	if err := CheckNodeName(c.NodeName("host")); err != nil {
		add("cluster.node", fmt.Sprintf("cluster.node %q %v", c.Node, err), `e.g. node = "%H" for the host name, or "web-1"`)
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		add("cluster.tls_cert", "cluster.tls_cert is set without cluster.tls_key", "set both to PEM files, or neither")
	case c.TLSCert == "" && c.TLSKey != "":
		add("cluster.tls_key", "cluster.tls_key is set without cluster.tls_cert", "set both to PEM files, or neither")
	}
	if c.PasswordFile != "" && c.Username == "" {
		add("cluster.password_file", "cluster.password_file is set without cluster.username", "set the etcd user name too")
	}
	durIn := func(key string, v Duration, lo, hi time.Duration) {
		if d := time.Duration(v); d < lo || d > hi {
			add(key, fmt.Sprintf("%s = %q is out of range", key, d.String()), fmt.Sprintf("allowed: %s to %s", lo, hi))
		}
	}
	durIn("cluster.lease_ttl", c.LeaseTTL, MinLeaseTTL, MaxLeaseTTL)
	if d := time.Duration(c.LeaseTTL); d >= MinLeaseTTL && d <= MaxLeaseTTL && d%time.Second != 0 {
		add("cluster.lease_ttl", fmt.Sprintf("cluster.lease_ttl = %q is not whole seconds", d.String()), "etcd leases count in seconds, e.g. \"10s\"")
	}
	durIn("cluster.dial_timeout", c.DialTimeout, MinDialTimeout, MaxDialTimeout)
}

func checkEndpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("the scheme is not http or https")
	case u.Host == "":
		return fmt.Errorf("no host")
	case u.Port() == "":
		return fmt.Errorf("no port")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
		return fmt.Errorf("only scheme://host:port is allowed")
	}
	return nil
}

// Duration is a time span written as a Go duration string ("10s", "1m30s")
// in opsvc.toml and in JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes d as "10s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a duration such as "10s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("config: %q is not a duration (write e.g. \"10s\")", b)
	}
	*d = Duration(v)
	return nil
}
