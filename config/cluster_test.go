package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestClusterSettings(t *testing.T) {
	got, err := LoadSettings("testdata/cluster_ok.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := defaultCluster()
	want.Etcd = []string{"http://127.0.0.1:2379", "https://etcd-2.example:2379"}
	want.Prefix, want.Node = "/fleet/a", "%H-a"
	want.TLSCA, want.TLSCert, want.TLSKey = "ca.pem", "client.pem", "client-key.pem"
	want.Username, want.PasswordFile = "opsvc", "etcd-password"
	want.LeaseTTL, want.DialTimeout = Duration(15*time.Second), Duration(2*time.Second)
	if diff := cmp.Diff(want, got.Cluster); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !got.Cluster.Enabled() || DefaultSettings().Cluster.Enabled() {
		t.Error("Enabled: want true with etcd endpoints, false by default")
	}
	if n := got.Cluster.NodeName("box"); n != "box-a" {
		t.Errorf("NodeName = %q, want box-a", n)
	}
	for node, want := range map[string]string{"%H": "h", "n-%%-%H%": "n-%-h%", "%x": "%x"} {
		if n := (ClusterSettings{Node: node}).NodeName("h"); n != want {
			t.Errorf("NodeName(%q) = %q, want %q", node, n, want)
		}
	}
}

func TestClusterValidate(t *testing.T) {
	for name, change := range map[string]func(*ClusterSettings){
		"lease_ttl fraction": func(c *ClusterSettings) { c.LeaseTTL = Duration(2500 * time.Millisecond) },
		"lease_ttl too long": func(c *ClusterSettings) { c.LeaseTTL = Duration(time.Hour) },
		"prefix slash":       func(c *ClusterSettings) { c.Prefix = "/opsvc/" },
		"endpoint path":      func(c *ClusterSettings) { c.Etcd = []string{"http://h:2379/v3"} },
		"endpoint no port":   func(c *ClusterSettings) { c.Etcd = []string{"http://h"} },
		"node long":          func(c *ClusterSettings) { c.Node = string(make([]byte, 65)) },
		"tls key alone":      func(c *ClusterSettings) { c.TLSKey = "k.pem" },
	} {
		s := DefaultSettings()
		change(&s.Cluster)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: validates", name)
		}
	}
	d := Duration(90 * time.Second)
	text, _ := d.MarshalText()
	var back Duration
	if err := back.UnmarshalText(text); err != nil || back != d || string(text) != "1m30s" {
		t.Errorf("Duration text round trip: %q → %v, %v", text, back, err)
	}
	if err := back.UnmarshalText([]byte("soon")); err == nil {
		t.Error("Duration reads \"soon\"")
	}
}
