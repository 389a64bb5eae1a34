package peer_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/polltest"
	"github.com/outpost-edge/outpost/sync/peer"
)

func TestReplicateCatchUpAndFollow(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 3)
	createTopic(t, a.log, "events", 1)
	appendN(t, a.log, "telemetry", 0, 500, 100)
	appendN(t, a.log, "telemetry", 2, 30, 5000)
	owner, _ := startOwner(t, a, "pi-b")
	replica := b.replicaLog("pi-a")
	f, _ := startFollower(t, b, "pi-a", owner.Addr().String(), replica)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	// Following: new records arrive without a reconnect.
	appendN(t, a.log, "events", 0, 20, 10)
	appendN(t, a.log, "telemetry", 1, 7, 10)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	if n := checkPrefix(t, a.log, replica); n != 557 {
		t.Fatalf("compared %d records, want 557", n)
	}
	if !f.Connected() {
		t.Fatal("follower not connected")
	}
	for _, ri := range owner.Replicas() {
		if ri.End > 0 && (len(ri.InSync) != 1 || ri.HighWatermark > ri.End) {
			t.Errorf("%s/%d: in sync %v, hw %d, end %d", ri.Topic, ri.Partition, ri.InSync, ri.HighWatermark, ri.End)
		}
	}
}

// TestOwnerHoldsForFollower: the owner keeps a retention hold per
// follower at the follower's acknowledged end, so retention never deletes
// what a follower has not copied.
func TestOwnerHoldsForFollower(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 1)
	appendN(t, a.log, "telemetry", 0, 100, 10)
	owner, _ := startOwner(t, a, "pi-b")
	p, err := a.log.Partition("telemetry", 0)
	if err != nil {
		t.Fatal(err)
	}
	hold, err := p.Hold(peer.HoldName("pi-b"))
	if err != nil {
		t.Fatal(err)
	}
	if hold.Offset() != 0 {
		t.Fatalf("hold before the follower came: %d, want 0 (everything)", hold.Offset())
	}
	replica := b.replicaLog("pi-a")
	startFollower(t, b, "pi-a", owner.Addr().String(), replica)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	appendN(t, a.log, "telemetry", 0, 5, 10)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	polltest.Until(t, 5*time.Second, func() error {
		if hold.Offset() != p.EndOffset() {
			return errorf("hold at %d, follower acknowledged %d", hold.Offset(), p.EndOffset())
		}
		return nil
	})
}

// TestReplicaSmallBatchLimit: a replica log whose batch limit is below the
// owner's fetch size (small segments) still takes every response.
func TestReplicaSmallBatchLimit(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 1)
	appendN(t, a.log, "telemetry", 0, 300, 1000)
	owner, _ := startOwner(t, a, "pi-b")
	replica, err := log.Open(filepath.Join(b.dir, "small"), log.Config{SegmentMaxBytes: 32 << 10}) // batches up to 8 KiB
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Close() })
	startFollower(t, b, "pi-a", owner.Addr().String(), replica)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	if n := checkPrefix(t, a.log, replica); n != 300 {
		t.Fatalf("compared %d records, want 300", n)
	}
}
