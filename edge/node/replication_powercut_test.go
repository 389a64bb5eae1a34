package node_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/log/logtest"
	"github.com/outpost-edge/outpost/edge/node"
)

// logValues reads every record of every partition of the log in dir and
// counts each value.
func logValues(t testing.TB, dir string) map[string]int {
	t.Helper()
	l, err := log.Open(dir, log.DefaultConfig())
	if err != nil {
		t.Fatalf("open %s after the power cut: %v", dir, err)
	}
	defer l.Close()
	out := map[string]int{}
	for _, ti := range l.Topics() {
		for _, pi := range ti.Partitions {
			p, _ := l.Partition(ti.Name, pi.Partition)
			for off := p.StartOffset(); off < p.EndOffset(); {
				recs, err := p.Read(context.Background(), off, 1<<20)
				if err != nil {
					t.Fatalf("%s %s/%d at %d: %v", dir, ti.Name, pi.Partition, off, err)
				}
				for _, r := range recs {
					out[string(r.Value)]++
					off = r.Offset + 1
				}
			}
		}
	}
	return out
}

// TestReplicationBothPowerCut: both Pis of a site share one power feed and
// lose it at once. Each node's files go through the log's fault layer,
// which then writes back an arbitrary subset of the unsynced pages of
// every file (torn, reordered writeback) — own logs, replicas, journals.
// Every message either node acknowledged (acks: all) is on its owner's
// disk and on the peer's replica afterwards, once: a replica only in
// memory would be no replica. Randomized; the seed is printed.
func TestReplicationBothPowerCut(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 0))
	addrA, addrB := freeAddr(t), freeAddr(t)
	cfgA := replicatingConfig(t, "pi-a", addrA, "pi-b", addrB)
	cfgB := replicatingConfig(t, "pi-b", addrB, "pi-a", addrA)
	fsA, fsB := logtest.NewFS(), logtest.NewFS()
	a := start(t, cfgA, node.Options{OpenFile: fsA.Open})
	b := start(t, cfgB, node.Options{OpenFile: fsB.Open})
	waitInSync(t, a, b)
	// Every PUBACK here came after the record was durable on both nodes.
	na, nb := 50+rnd.IntN(100), 50+rnd.IntN(100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishQoS1(t, b.MQTTAddrs()[0], "dev-b", "sensors/dev-b/temp", nb)
	}()
	publishQoS1(t, a.MQTTAddrs()[0], "dev-a", "sensors/dev-a/temp", na)
	<-done

	// The power goes: nothing more reaches either disk, then each disk
	// keeps what its writeback happened to write.
	fsA.Crash()
	fsB.Crash()
	for _, n := range []*running{a, b} {
		n.cancel()
		select {
		case <-n.done: // errors expected: the disks are gone
			close(n.done)
		case <-time.After(15 * time.Second):
			t.Fatal("node did not stop")
		}
	}
	statsA := fsA.PowerLossTorn(t, rnd)
	statsB := fsB.PowerLossTorn(t, rnd)
	t.Logf("torn writeback: pi-a %+v, pi-b %+v", statsA, statsB)

	check := func(what, dir, client string, n int) {
		vals := logValues(t, dir)
		for i := range n {
			v := fmt.Sprintf("%s-%d", client, i)
			if vals[v] != 1 {
				t.Errorf("%s: acknowledged %q is there %d times, want once", what, v, vals[v])
			}
		}
	}
	check("pi-a's log", filepath.Join(cfgA.DataDir, "log"), "dev-a", na)
	check("pi-b's replica of pi-a", filepath.Join(cfgB.DataDir, "replicas", "pi-a"), "dev-a", na)
	check("pi-b's log", filepath.Join(cfgB.DataDir, "log"), "dev-b", nb)
	check("pi-a's replica of pi-b", filepath.Join(cfgA.DataDir, "replicas", "pi-b"), "dev-b", nb)

	// Both come back on their disks and replicate on.
	a = start(t, cfgA, node.Options{})
	b = start(t, cfgB, node.Options{})
	publishQoS1(t, a.MQTTAddrs()[0], "dev-a2", "sensors/dev-a2/temp", 10)
	sameRecords(t, a.Log(), b.ReplicaLog("pi-a"), 20*time.Second)
}
