package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/node"
)

const siteSecret = "a-site-secret-of-32-bytes-000000"

// freeAddr reserves a loopback port for a peer listener: each node's
// config must name the other's address before either starts.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitInSync waits until every partition of each node has its peer in
// sync (before that, acks: all acknowledges by the policy alone).
func waitInSync(t testing.TB, nodes ...*running) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		for _, n := range nodes {
			for _, ri := range n.Replicas() {
				if len(ri.InSync) != 1 {
					return fmt.Errorf("%s/%d: in sync %v", ri.Topic, ri.Partition, ri.InSync)
				}
			}
		}
		return nil
	})
}

func replicatingConfig(t testing.TB, name, listen, peerName, peerAddr string) node.Config {
	cfg := testConfig(t)
	cfg.Upstream.Site, cfg.Upstream.Node = "farm", name
	cfg.Replication.Listen = listen
	cfg.Replication.Peers = []node.PeerConfig{{Name: peerName, Address: peerAddr}}
	cfg.Replication.Secret = siteSecret
	return cfg
}

// publishQoS1 publishes n QoS 1 messages on one connection and waits for
// each PUBACK: every returned message is acknowledged.
func publishQoS1(t testing.TB, addr, client, topic string, n int) {
	t.Helper()
	c, br := rawConnect(t, addr, client)
	defer c.Close()
	for i := range n {
		id := uint16(i%65000 + 1)
		payload := fmt.Sprintf("%s-%d", client, i)
		body := append([]byte{0, byte(len(topic))}, topic...)
		body = append(body, byte(id>>8), byte(id))
		body = append(body, payload...)
		if _, err := c.Write(append([]byte{0x32, byte(len(body))}, body...)); err != nil {
			t.Fatal(err)
		}
		ack := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(br, ack); err != nil || ack[0] != 0x40 || ack[2] != byte(id>>8) || ack[3] != byte(id) {
			t.Fatalf("puback %x: %v", ack, err)
		}
	}
}

// sameRecords waits until replica holds exactly owner's records, partition
// by partition, byte for byte in the log's encoding.
func sameRecords(t testing.TB, owner, replica *log.Log, timeout time.Duration) int {
	t.Helper()
	total := 0
	waitFor(t, timeout, func() error {
		total = 0
		for _, ti := range owner.Topics() {
			for _, pi := range ti.Partitions {
				op, _ := owner.Partition(ti.Name, pi.Partition)
				rp, err := replica.Partition(ti.Name, pi.Partition)
				if err != nil {
					return err
				}
				if rp.EndOffset() != op.EndOffset() {
					return fmt.Errorf("%s/%d: replica at %d, owner at %d", ti.Name, pi.Partition, rp.EndOffset(), op.EndOffset())
				}
				a, err := op.Read(context.Background(), 0, 16<<20)
				if err != nil {
					return err
				}
				b, err := rp.Read(context.Background(), 0, 16<<20)
				if err != nil {
					return err
				}
				if len(a) != len(b) {
					return fmt.Errorf("%s/%d: %d records read, replica %d", ti.Name, pi.Partition, len(a), len(b))
				}
				for i := range a {
					ea, _ := a[i].MarshalMsg(nil)
					eb, _ := b[i].MarshalMsg(nil)
					if !bytes.Equal(ea, eb) {
						t.Fatalf("%s/%d offset %d: replica differs from owner", ti.Name, pi.Partition, a[i].Offset)
					}
				}
				total += len(a)
			}
		}
		return nil
	})
	return total
}

// TestReplicationTwoNodes: two nodes, each the other's peer; devices
// publish QoS 1 to both; each node's replica of the other ends equal to
// the other's log, and both report the partitions in sync.
func TestReplicationTwoNodes(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := start(t, replicatingConfig(t, "pi-a", addrA, "pi-b", addrB), node.Options{})
	b := start(t, replicatingConfig(t, "pi-b", addrB, "pi-a", addrA), node.Options{})
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 150)
	publishQoS1(t, b.MQTTAddrs()[0], "dev-2", "sensors/dev-2/temp", 70)
	publishQoS1(t, a.MQTTAddrs()[0], "dev-3", "sensors/dev-3/temp", 30)
	if n := sameRecords(t, a.Log(), b.ReplicaLog("pi-a"), 10*time.Second); n != 180 {
		t.Fatalf("pi-a: %d records replicated, want 180", n)
	}
	if n := sameRecords(t, b.Log(), a.ReplicaLog("pi-b"), 10*time.Second); n != 70 {
		t.Fatalf("pi-b: %d records replicated, want 70", n)
	}
	waitFor(t, 5*time.Second, func() error {
		for _, ri := range a.Replicas() {
			if ri.End > 0 && (len(ri.InSync) != 1 || ri.HighWatermark != ri.End) {
				return fmt.Errorf("%s/%d: in sync %v, hw %d, end %d", ri.Topic, ri.Partition, ri.InSync, ri.HighWatermark, ri.End)
			}
		}
		return nil
	})
	// /v1/topics shows each partition's replica state.
	var td struct {
		Topics []struct {
			Name       string `json:"name"`
			Partitions []struct {
				Partition   int32 `json:"partition"`
				EndOffset   int64 `json:"end_offset"`
				Replication *struct {
					Replicas      []string         `json:"replicas"`
					HighWatermark int64            `json:"high_watermark"`
					InSync        []string         `json:"in_sync"`
					Ends          map[string]int64 `json:"replica_end_offsets"`
					Lag           map[string]int64 `json:"replica_lag"`
					UnderRep      bool             `json:"under_replicated"`
				} `json:"replication"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	getJSON(t, "http://"+a.HTTPAddr()+"/v1/topics", &td)
	for _, tp := range td.Topics {
		for _, p := range tp.Partitions {
			r := p.Replication
			if r == nil || len(r.Replicas) != 1 || r.Replicas[0] != "pi-b" || len(r.InSync) != 1 || r.UnderRep ||
				r.HighWatermark != p.EndOffset || r.Ends["pi-b"] != p.EndOffset || r.Lag["pi-b"] != 0 {
				t.Errorf("/v1/topics %s/%d: replication %+v, end %d", tp.Name, p.Partition, r, p.EndOffset)
			}
		}
	}
	// The metrics are served and documented (TestMetricsDocumented).
	body := getText(t, "http://"+a.HTTPAddr()+"/metrics")
	for _, m := range []string{"outpost_replica_owner_epoch 1", `outpost_replica_connected{peer="pi-b",role="follower"} 1`, "outpost_replica_high_watermark"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}

// TestReplicationRestartBumpsEpoch: a restarted node serves at the next
// epoch and its peer continues; the replica is still exactly its log.
func TestReplicationRestartBumpsEpoch(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	cfgA := replicatingConfig(t, "pi-a", addrA, "pi-b", addrB)
	a := start(t, cfgA, node.Options{})
	b := start(t, replicatingConfig(t, "pi-b", addrB, "pi-a", addrA), node.Options{})
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 50)
	sameRecords(t, a.Log(), b.ReplicaLog("pi-a"), 10*time.Second)
	a.stop(t)
	cfgA.MQTT.Address = a.MQTTAddrs()[0]
	a = start(t, cfgA, node.Options{})
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 50)
	if n := sameRecords(t, a.Log(), b.ReplicaLog("pi-a"), 15*time.Second); n != 100 {
		t.Fatalf("%d records replicated, want 100", n)
	}
	if !strings.Contains(getText(t, "http://"+a.HTTPAddr()+"/metrics"), "outpost_replica_owner_epoch 2") {
		t.Fatal("restarted owner is not at epoch 2")
	}
}

func getText(t testing.TB, url string) string {
	t.Helper()
	resp, err := httpGet(url)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestReplicationConfigNamesTheField(t *testing.T) {
	ok := func(c *node.Config) {
		c.Replication.Listen = "127.0.0.1:7400"
		c.Replication.Peers = []node.PeerConfig{{Name: "pi-b", Address: "10.0.0.2:7400"}}
		c.Replication.Secret = siteSecret
	}
	cases := []struct {
		name string
		mod  func(*node.Config)
		want string
	}{
		{"listen without peers", func(c *node.Config) { c.Replication.Listen = "127.0.0.1:7400" }, "replication.peers"},
		{"bad listen", func(c *node.Config) { ok(c); c.Replication.Listen = "7400" }, "replication.listen"},
		{"bad peer name", func(c *node.Config) { ok(c); c.Replication.Peers[0].Name = "pi b" }, "replication.peers[0].name"},
		{"duplicate peer", func(c *node.Config) { ok(c); c.Replication.Peers = append(c.Replication.Peers, c.Replication.Peers[0]) }, "replication.peers[1].name"},
		{"bad peer address", func(c *node.Config) { ok(c); c.Replication.Peers[0].Address = "pi-b" }, "replication.peers[0].address"},
		{"no secret", func(c *node.Config) { ok(c); c.Replication.Secret = "" }, "replication.secret"},
		{"short secret", func(c *node.Config) { ok(c); c.Replication.Secret = "short" }, "replication.secret"},
		{"acks", func(c *node.Config) { ok(c); c.Replication.Acks = "some" }, "replication.acks"},
		{"policy", func(c *node.Config) { ok(c); c.Replication.Policy = "panic" }, "replication.policy"},
		{"min_insync", func(c *node.Config) { ok(c); c.Replication.MinInSync = 2 }, "replication.min_insync"},
		{"lag_max", func(c *node.Config) { ok(c); c.Replication.LagMax = 0 }, "replication.lag_max"},
		{"tls half", func(c *node.Config) { ok(c); c.Replication.TLS.CertFile = "x.pem" }, "replication.tls.cert_file"},
		{"ca without cert", func(c *node.Config) { ok(c); c.Replication.TLS.CAFile = "ca.pem" }, "replication.tls.ca_file"},
		{"sync interval", func(c *node.Config) { ok(c); c.Log.Sync = "interval" }, "log.sync"},
		{"bandwidth", func(c *node.Config) { ok(c); c.Replication.BandwidthBytesPerSec = 10 }, "replication.bandwidth_bytes_per_sec"},
		{"share without an uplink budget", func(c *node.Config) { ok(c); c.Replication.ShareUplinkBandwidth = true }, "replication.share_uplink_bandwidth"},
		{"share and a cap", func(c *node.Config) {
			ok(c)
			c.Replication.ShareUplinkBandwidth, c.Replication.BandwidthBytesPerSec = true, 1<<20
		}, "replication.bandwidth_bytes_per_sec"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := node.DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want %q", err, c.want)
			}
		})
	}
	cfg := node.DefaultConfig()
	ok(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a valid replication section refused: %v", err)
	}
}

// Errors found only at Open name their field too.
func TestReplicationOpenNamesTheField(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*node.Config)
		want string
	}{
		{"peer is this node", func(c *node.Config) { c.Replication.Peers[0].Name = "pi-a" }, "replication.peers[0].name"},
		{"missing secret file", func(c *node.Config) { c.Replication.Secret, c.Replication.SecretFile = "", "/nonexistent/secret" }, "replication.secret_file"},
		{"short secret file", func(c *node.Config) {
			p := filepath.Join(t.TempDir(), "s")
			os.WriteFile(p, []byte("short\n"), 0o600)
			c.Replication.Secret, c.Replication.SecretFile = "", p
		}, "replication.secret_file"},
		{"listen taken", func(c *node.Config) {
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			t.Cleanup(func() { ln.Close() })
			c.Replication.Listen = ln.Addr().String()
		}, "replication.listen"},
		{"node name", func(c *node.Config) { c.Upstream.Node = "" }, ""}, // the generated id is a valid name
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := replicatingConfig(t, "pi-a", "127.0.0.1:0", "pi-b", "127.0.0.1:1")
			c.mod(&cfg)
			n, err := node.Open(context.Background(), cfg, node.Options{})
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				n.Close()
				return
			}
			if err == nil {
				n.Close()
				t.Fatalf("Open succeeded, want an error naming %s", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v, want %q", err, c.want)
			}
		})
	}
}

func TestParsePeers(t *testing.T) {
	got, err := node.ParsePeers("pi-b=10.0.0.2:7400, pi-c=[::1]:7400")
	if err != nil || len(got) != 2 || got[0] != (node.PeerConfig{Name: "pi-b", Address: "10.0.0.2:7400"}) || got[1].Address != "[::1]:7400" {
		t.Fatalf("ParsePeers = %+v, %v", got, err)
	}
	for _, bad := range []string{"pi-b", "=1.2.3.4:1", "pi-b=", "a=1:1,,b=2:2"} {
		if _, err := node.ParsePeers(bad); err == nil || !strings.Contains(err.Error(), "-peers") {
			t.Errorf("ParsePeers(%q) = %v, want an error naming -peers", bad, err)
		}
	}
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestReplicationRestoreAfterDiskLoss: pi-a's data directory is deleted
// (a new SD card) and pi-a starts again under its name: it restores its
// partitions from pi-b's replica before taking publishes, so new records
// continue at the next offsets and pi-b's replica stays a prefix of it.
func TestReplicationRestoreAfterDiskLoss(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	cfgA := replicatingConfig(t, "pi-a", addrA, "pi-b", addrB)
	a := start(t, cfgA, node.Options{})
	b := start(t, replicatingConfig(t, "pi-b", addrB, "pi-a", addrA), node.Options{})
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 120)
	sameRecords(t, a.Log(), b.ReplicaLog("pi-a"), 10*time.Second)
	a.stop(t)
	if err := os.RemoveAll(cfgA.DataDir); err != nil {
		t.Fatal(err)
	}
	a = start(t, cfgA, node.Options{})
	if n := sameRecords(t, b.ReplicaLog("pi-a"), a.Log(), time.Second); n != 120 {
		t.Fatalf("restored %d records, want 120", n)
	}
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 30)
	if n := sameRecords(t, a.Log(), b.ReplicaLog("pi-a"), 10*time.Second); n != 150 {
		t.Fatalf("%d records after the restore, want 150", n)
	}
	if !strings.Contains(getText(t, "http://"+a.HTTPAddr()+"/metrics"), "outpost_replica_owner_epoch 2") {
		t.Fatal("restored node is not at epoch 2")
	}
}
