package peer_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/polltest"
	"github.com/outpost-edge/outpost/sync/peer"
)

// TestOwnerRestartWhileFollowing restarts the owner (same disk) while the
// follower fetches: the owner comes back at the next epoch, the follower
// reconnects through its backoff and continues from its own end, and the
// replica ends as a prefix of the owner with no record twice.
func TestOwnerRestartWhileFollowing(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 2)
	appendN(t, a.log, "telemetry", 0, 300, 200)
	owner, stopOwner := startOwner(t, a, "pi-b")
	if owner.Epoch() != 1 {
		t.Fatalf("first epoch %d, want 1", owner.Epoch())
	}
	proxy := newFaultProxy(t, owner.Addr().String())
	replica := b.replicaLog("pi-a")
	f, _ := startFollower(t, b, "pi-a", proxy.Addr(), replica)
	waitCaughtUp(t, a.log, replica, 10*time.Second)

	for restart := range 3 {
		appendN(t, a.log, "telemetry", int32(restart%2), 100, 50)
		stopOwner.stop(t)
		a.close()
		a.open()
		appendN(t, a.log, "telemetry", 1, 10, 50) // before NewOwner: these count in the previous epoch
		owner, stopOwner = startOwner(t, a, "pi-b")
		if want := uint64(restart + 2); owner.Epoch() != want {
			t.Fatalf("epoch after restart %d: %d, want %d", restart, owner.Epoch(), want)
		}
		proxy.setTarget(owner.Addr().String())
		appendN(t, a.log, "telemetry", 0, 50, 50)
		waitCaughtUp(t, a.log, replica, 10*time.Second)
		checkPrefix(t, a.log, replica)
	}
	polltest.Until(t, 5*time.Second, func() error {
		for _, s := range f.Status() {
			if s.Stalled != "" {
				t.Fatalf("replica stalled: %s", s.Stalled)
			}
		}
		return nil
	})
}

// TestStaleOwnerFenced: an owner whose data directory was replaced (new
// disk, same node name) comes back at epoch 1, below what its follower saw.
// The follower refuses it and keeps its replica untouched, so the only
// full copy of the old data survives.
func TestStaleOwnerFenced(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 1)
	appendN(t, a.log, "telemetry", 0, 100, 50)
	_, stop1 := startOwner(t, a, "pi-b")
	stop1.stop(t)
	owner, stop2 := startOwner(t, a, "pi-b") // epoch 2
	proxy := newFaultProxy(t, owner.Addr().String())
	replica := b.replicaLog("pi-a")
	startFollower(t, b, "pi-a", proxy.Addr(), replica)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	stop2.stop(t)

	// The disk dies: a new, empty data directory under the same name.
	a.close()
	a.dir = t.TempDir()
	a.open()
	createTopic(t, a.log, "telemetry", 1)
	appendN(t, a.log, "telemetry", 0, 5, 50)
	owner, _ = startOwner(t, a, "pi-b")
	if owner.Epoch() != 1 {
		t.Fatalf("new disk: epoch %d, want 1", owner.Epoch())
	}
	proxy.setTarget(owner.Addr().String())
	proxy.Cut() // drop the old session so that the follower dials the new owner
	proxy.Heal()
	polltest.Until(t, 10*time.Second, func() error {
		if v := counterValue(t, b, "outpost_replica_connects_total", "pi-a", "epoch", "follower"); v < 1 {
			return errorf("no refused handshake yet")
		}
		return nil
	})
	p, err := replica.Partition("telemetry", 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.EndOffset() != 100 {
		t.Fatalf("replica end %d after a stale owner appeared, want 100 (untouched)", p.EndOffset())
	}
	recs, err := p.Read(context.Background(), 0, 1<<20)
	if err != nil || len(recs) == 0 || recs[0].Value[0] != 0 || len(recs[0].Value) != 50 {
		t.Fatalf("replica records changed: %v", err)
	}
}

// TestDivergedReplicaKept: the owner lost the tail of its log (a power cut
// under sync: none, simulated by restoring an older copy of its log) but
// kept its metadata, and wrote new records at the lost offsets in a new
// epoch. The follower, ahead in an older epoch, is told where that epoch
// ends in the owner's history; it does not append the new records over
// its own and keeps what it has (truncation is not built yet).
func TestDivergedReplicaKept(t *testing.T) {
	aDir := t.TempDir()
	a := openNode(t, "pi-a", aDir)
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 1)
	appendN(t, a.log, "telemetry", 0, 50, 20)
	a.log.Close()
	snapshot := t.TempDir()
	copyDir(t, filepath.Join(aDir, "log"), snapshot)
	a.log = nil
	a.close()
	a.open()
	owner, stop := startOwner(t, a, "pi-b") // epoch 1 from offset 0
	appendN(t, a.log, "telemetry", 0, 50, 20)
	proxy := newFaultProxy(t, owner.Addr().String())
	replica := b.replicaLog("pi-a")
	f, _ := startFollower(t, b, "pi-a", proxy.Addr(), replica)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	stop.stop(t)

	a.close()
	if err := os.RemoveAll(filepath.Join(aDir, "log")); err != nil {
		t.Fatal(err)
	}
	copyDir(t, snapshot, filepath.Join(aDir, "log"))
	a.open()
	owner, _ = startOwner(t, a, "pi-b") // epoch 2 from offset 50
	appendN(t, a.log, "telemetry", 0, 10, 33)
	proxy.setTarget(owner.Addr().String())
	proxy.Cut()
	proxy.Heal()
	polltest.Until(t, 10*time.Second, func() error {
		for _, s := range f.Status() {
			if strings.Contains(s.Stalled, "diverged") && strings.Contains(s.Stalled, "offset 50") {
				return nil
			}
		}
		return errorf("replica not stalled as diverged at 50: %+v", f.Status())
	})
	p, _ := replica.Partition("telemetry", 0)
	if p.EndOffset() != 100 {
		t.Fatalf("diverged replica end %d, want 100 (kept)", p.EndOffset())
	}
	recs, err := p.Read(context.Background(), 50, 1<<20)
	if err != nil || len(recs) == 0 || len(recs[0].Value) != 20 {
		t.Fatalf("replica's own records at 50 were overwritten: %v", err)
	}
	if v := gaugeValue(t, b, "outpost_replica_stalled_partitions", "pi-a"); v != 1 {
		t.Fatalf("outpost_replica_stalled_partitions = %v, want 1", v)
	}
}

// TestFollowerRestartResumes: the follower stops and starts again; it asks
// from its durable end and the result is still an exact prefix.
func TestFollowerRestartResumes(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 2)
	owner, _ := startOwner(t, a, "pi-b")
	replica := b.replicaLog("pi-a")
	for i := range 3 {
		_, stop := startFollower(t, b, "pi-a", owner.Addr().String(), replica)
		appendN(t, a.log, "telemetry", int32(i%2), 200, 100)
		waitCaughtUp(t, a.log, replica, 10*time.Second)
		stop.stop(t)
	}
	if n := checkPrefix(t, a.log, replica); n != 600 {
		t.Fatalf("compared %d records, want 600", n)
	}
}

// TestAuthRefused: a wrong secret, an unlisted follower and a wrong site
// are refused; nothing is replicated.
func TestAuthRefused(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	createTopic(t, a.log, "telemetry", 1)
	appendN(t, a.log, "telemetry", 0, 10, 10)
	owner, _ := startOwner(t, a, "pi-b")
	cases := []struct {
		name   string
		node   string
		mutate func(*peer.FollowerConfig)
	}{
		{"wrong_secret", "pi-b", func(c *peer.FollowerConfig) { c.Secret = []byte("another-secret-of-16+") }},
		{"unlisted_follower", "pi-c", func(c *peer.FollowerConfig) {}},
		{"wrong_site", "pi-b", func(c *peer.FollowerConfig) { c.Site = "other" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := openNode(t, c.node, t.TempDir())
			replica := b.replicaLog("pi-a")
			cfg := peer.FollowerConfig{Config: b.config(), Owner: "pi-a", Address: owner.Addr().String(), Log: replica}
			c.mutate(&cfg)
			f, err := peer.NewFollower(cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := run(t, f.Run)
			polltest.Until(t, 5*time.Second, func() error {
				if v := counterValue(t, a, "outpost_replica_connects_total", "unknown", "auth", "owner"); v < 1 {
					return errorf("owner has not refused yet")
				}
				return nil
			})
			r.stop(t)
			if len(replica.Topics()) != 0 {
				t.Fatalf("a refused follower created replica topics: %v", replica.Topics())
			}
		})
	}
}
