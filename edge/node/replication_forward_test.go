package node_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/node"
)

// TestReplicationRestoreForwardsExactlyOnce: pi-a forwards to the centre,
// the uplink goes down, devices keep publishing (acks: all: pi-b holds
// every acknowledged record), then pi-a's disk dies. pi-a comes back on an
// empty directory, restores from pi-b and forwards from exactly where the
// central stream ends: every acknowledged record is upstream once, in
// offset order per partition (G3 across a lost disk).
func TestReplicationRestoreForwardsExactlyOnce(t *testing.T) {
	srv := natstest.RunServer(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	cfgA := replicatingConfig(t, "pi-a", addrA, "pi-b", addrB)
	cfgA.Upstream.URL = srv.URL()
	cfgA.Upstream.Site = "farm"
	start(t, replicatingConfig(t, "pi-b", addrB, "pi-a", addrA), node.Options{}) // pi-b, the replica
	a := start(t, cfgA, node.Options{})
	waitInSync(t, a)
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 60)
	publishQoS1(t, a.MQTTAddrs()[0], "dev-2", "sensors/dev-2/temp", 40)
	_, js := srv.Connect()
	waitStreamHolds(t, js, 100)

	srv.Stop() // the uplink goes down; devices go on
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 30)
	publishQoS1(t, a.MQTTAddrs()[0], "dev-3", "sensors/dev-3/temp", 20)
	a.stop(t)
	if err := os.RemoveAll(cfgA.DataDir); err != nil { // the disk dies
		t.Fatal(err)
	}
	srv.Restart()
	start(t, cfgA, node.Options{}) // pi-a on a new disk: it restores from pi-b and forwards
	_, js = srv.Connect()
	waitFor(t, 30*time.Second, func() error {
		if n := streamMsgCount(js); n < 150 {
			return fmt.Errorf("stream holds %d of 150", n)
		}
		return nil
	})
	next := map[int32]int64{}
	total := 0
	natstest.EachMsg(t, js, wire.StreamName(wire.DefaultPrefix, "telemetry"), func(msg jetstream.Msg) {
		m, err := wire.Parse(msg.Headers(), msg.Data())
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		for _, rec := range m.Records {
			if rec.Offset != next[m.Origin.Partition] {
				t.Fatalf("partition %d: offset %d, want %d (gap, duplicate or reorder)", m.Origin.Partition, rec.Offset, next[m.Origin.Partition])
			}
			next[m.Origin.Partition]++
			total++
		}
	})
	if total != 150 {
		t.Fatalf("%d records upstream, want 150 exactly once", total)
	}
}
