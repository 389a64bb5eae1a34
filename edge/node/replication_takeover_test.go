package node_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/node"
)

// upstreamOrigins reads the telemetry stream and checks that every origin
// partition holds offsets 0, 1, 2… once each, in stream order; it returns
// the records per origin node.
func upstreamOrigins(t testing.TB, js jetstream.JetStream) map[string]int {
	t.Helper()
	type key struct {
		node string
		part int32
	}
	next := map[key]int64{}
	perNode := map[string]int{}
	natstest.EachMsg(t, js, wire.StreamName(wire.DefaultPrefix, "telemetry"), func(msg jetstream.Msg) {
		m, err := wire.Parse(msg.Headers(), msg.Data())
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		k := key{m.Origin.Node, m.Origin.Partition}
		for _, rec := range m.Records {
			if rec.Offset != next[k] {
				t.Fatalf("%s/%d: offset %d, want %d (gap, duplicate or reorder)", k.node, k.part, rec.Offset, next[k])
			}
			next[k]++
			perNode[k.node]++
		}
	})
	return perNode
}

// waitStreamHolds waits until the telemetry stream holds want messages.
func waitStreamHolds(t testing.TB, js jetstream.JetStream, want uint64) {
	t.Helper()
	waitFor(t, 30*time.Second, func() error {
		if n := streamMsgCount(js); n != want {
			return fmt.Errorf("stream holds %d of %d", n, want)
		}
		return nil
	})
}

func streamMsgCount(js jetstream.JetStream) uint64 {
	s, err := js.Stream(context.Background(), wire.StreamName(wire.DefaultPrefix, "telemetry"))
	if err != nil {
		return 0
	}
	info, err := s.Info(context.Background())
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// TestReplicationTakeover (G3 and G6 across a dead node): pi-a forwards;
// its uplink goes down while devices keep publishing (acks: all, so pi-b
// holds every acknowledged record); pi-a dies with its disk. pi-b finds
// pi-a unreachable, takes pi-a's forwarding lease and forwards pi-a's
// partitions from its replica, from exactly where the central stream
// ends. pi-a comes back on an empty disk, restores from pi-b, takes its
// lease back, and pi-b stops. Every acknowledged record is upstream once,
// in offset order per origin partition, and /v1-style status says who
// forwarded.
func TestReplicationTakeover(t *testing.T) {
	srv := natstest.RunServer(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	cfg := func(name, listen, peer, peerAddr string) node.Config {
		c := replicatingConfig(t, name, listen, peer, peerAddr)
		c.Upstream.URL = srv.URL()
		c.Upstream.ReconnectMax = 500 * time.Millisecond
		c.Replication.TakeoverAfter = 300 * time.Millisecond
		c.Replication.LeaseTTL = 2 * time.Second
		return c
	}
	cfgA, cfgB := cfg("pi-a", addrA, "pi-b", addrB), cfg("pi-b", addrB, "pi-a", addrA)
	b := start(t, cfgB, node.Options{})
	a := start(t, cfgA, node.Options{})
	waitInSync(t, a)
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 60)
	_, js := srv.Connect()
	waitStreamHolds(t, js, 60)

	srv.Stop() // the uplink goes down; devices go on
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 30)
	publishQoS1(t, a.MQTTAddrs()[0], "dev-2", "sensors/dev-2/temp", 20)
	a.stop(t)
	if err := os.RemoveAll(cfgA.DataDir); err != nil { // pi-a's disk dies with it
		t.Fatal(err)
	}
	srv.Restart()
	_, js = srv.Connect()
	died := time.Now()
	waitStreamHolds(t, js, 110)
	t.Logf("pi-a's 50 unforwarded records upstream %v after the uplink came back (pi-b forwarding)", time.Since(died).Round(time.Millisecond))
	if got := upstreamOrigins(t, js); got["pi-a"] != 110 {
		t.Fatalf("records per origin node %v, want pi-a: 110", got)
	}
	kv, err := js.KeyValue(context.Background(), wire.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	leaseHolder := func() string {
		e, err := kv.Get(context.Background(), wire.LeaseKey("farm", "pi-a"))
		if err != nil {
			return ""
		}
		return string(e.Value())
	}
	if h := leaseHolder(); !containsHolder(h, "pi-b") {
		t.Fatalf("pi-a's lease is %q, want held by pi-b", h)
	}
	if v := metric(t, b.HTTPAddr(), `outpost_upstream_leases_held{origin="pi-a"}`); v != "1" {
		t.Errorf("pi-b's outpost_upstream_leases_held{origin=pi-a} = %q, want 1", v)
	}

	// pi-a returns on a new disk: it restores from pi-b, takes its lease
	// back, and forwards on; pi-b stops.
	a = start(t, cfgA, node.Options{})
	waitFor(t, 20*time.Second, func() error {
		if h := leaseHolder(); !containsHolder(h, "pi-a") {
			return fmt.Errorf("pi-a's lease is %q", h)
		}
		if v := metric(t, b.HTTPAddr(), `outpost_upstream_leases_held{origin="pi-a"}`); v != "0" {
			return fmt.Errorf("pi-b still forwards for pi-a")
		}
		return nil
	})
	publishQoS1(t, a.MQTTAddrs()[0], "dev-3", "sensors/dev-3/temp", 25)
	waitStreamHolds(t, js, 135)
	if got := upstreamOrigins(t, js); got["pi-a"] != 135 || len(got) != 1 {
		t.Fatalf("records per origin node %v, want pi-a: 135", got)
	}
}

func containsHolder(leaseJSON, node string) bool {
	return strings.Contains(leaseJSON, `"holder":"`+node+`"`)
}

// TestReplicationSharesUplinkBandwidth: with
// replication.share_uplink_bandwidth the peer link and the uplink draw
// from one budget (upstream.bandwidth_bytes_per_sec): both still carry
// everything — acks: all acknowledgements and the stream's copy.
func TestReplicationSharesUplinkBandwidth(t *testing.T) {
	srv := natstest.RunServer(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	cfgA := replicatingConfig(t, "pi-a", addrA, "pi-b", addrB)
	cfgA.Upstream.URL, cfgA.Upstream.BandwidthBytesPerSec = srv.URL(), 256<<10
	cfgA.Replication.ShareUplinkBandwidth = true
	start(t, replicatingConfig(t, "pi-b", addrB, "pi-a", addrA), node.Options{})
	a := start(t, cfgA, node.Options{})
	waitInSync(t, a)
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 200)
	_, js := srv.Connect()
	waitStreamHolds(t, js, 200)
	if got := upstreamOrigins(t, js); got["pi-a"] != 200 {
		t.Fatalf("records upstream %v", got)
	}
}
