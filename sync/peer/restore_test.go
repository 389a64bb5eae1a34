package peer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/polltest"
	"github.com/outpost-edge/outpost/sync/peer"
)

// TestRestoreAfterDiskLoss: pi-a's disk is replaced (empty log and
// metadata under the same name). Before it serves, Restore copies pi-b's
// replica back at the same offsets, with its epoch histories and epoch, so
// pi-a reuses no offset and starts at the next epoch; pi-b follows it on
// without a stall.
func TestRestoreAfterDiskLoss(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 2)
	appendN(t, a.log, "telemetry", 0, 200, 100)
	_, stop := startOwner(t, a, "pi-b") // epoch 1
	stop.stop(t)
	ownerA, stopA := startOwner(t, a, "pi-b") // epoch 2
	appendN(t, a.log, "telemetry", 1, 100, 100)
	replica := b.replicaLog("pi-a")
	ownerB, _ := startOwnerWith(t, b, map[string]*log.Log{"pi-a": replica}, "pi-a")
	proxy := newFaultProxy(t, ownerA.Addr().String())
	f, _ := startFollower(t, b, "pi-a", proxy.Addr(), replica)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	stopA.stop(t)

	// The disk dies.
	a.close()
	a.dir = t.TempDir()
	a.open()
	createTopic(t, a.log, "telemetry", 2) // the node creates its topics from its routes first
	cfg := peer.RestoreConfig{Config: a.config(), Log: a.log, Peers: []peer.PeerAddr{{Name: "pi-b", Address: ownerB.Addr().String()}}}
	res, err := peer.Restore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.From != "pi-b" || res.Epoch != 2 || res.Records != 300 {
		t.Fatalf("Restore = %+v, want from pi-b, epoch 2, 300 records", res)
	}
	waitCaughtUp(t, replica, a.log, time.Second) // the restored log ends where the replica does
	checkPrefix(t, replica, a.log)
	if res, err := peer.Restore(context.Background(), cfg); err != nil || res.From != "" {
		t.Fatalf("second Restore = %+v, %v: want nothing to do", res, err)
	}

	ownerA, _ = startOwner(t, a, "pi-b")
	if ownerA.Epoch() != 3 {
		t.Fatalf("restored owner's epoch %d, want 3", ownerA.Epoch())
	}
	proxy.setTarget(ownerA.Addr().String())
	proxy.Cut()
	proxy.Heal()
	appendN(t, a.log, "telemetry", 0, 50, 100)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	if n := checkPrefix(t, a.log, replica); n != 350 {
		t.Fatalf("compared %d records, want 350", n)
	}
	polltest.Until(t, time.Second, func() error {
		for _, s := range f.Status() {
			if s.Stalled != "" {
				t.Fatalf("replica stalled after the restore: %s", s.Stalled)
			}
		}
		return nil
	})
}

// TestRestoreCases: nothing to restore on a new site; an unreachable peer
// is reported; records in a log without an epoch while a peer holds a
// replica is a conflict that stops the start.
func TestRestoreCases(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	replica := b.replicaLog("pi-a")
	ownerB, _ := startOwnerWith(t, b, map[string]*log.Log{"pi-a": replica}, "pi-a")
	createTopic(t, a.log, "telemetry", 1)
	cfg := peer.RestoreConfig{Config: a.config(), Log: a.log, Peers: []peer.PeerAddr{{Name: "pi-b", Address: ownerB.Addr().String()}}}

	res, err := peer.Restore(context.Background(), cfg)
	if err != nil || res.From != "" || len(res.Unreachable) != 0 {
		t.Fatalf("new site: Restore = %+v, %v; want nothing to do", res, err)
	}

	down := cfg
	down.Peers = []peer.PeerAddr{{Name: "pi-c", Address: "127.0.0.1:1"}}
	res, err = peer.Restore(context.Background(), down)
	if err != nil || len(res.Unreachable) != 1 || res.Unreachable[0] != "pi-c" {
		t.Fatalf("unreachable peer: Restore = %+v, %v", res, err)
	}

	// pi-b now holds a replica of pi-a at epoch 1 (pi-a served once) ...
	appendN(t, a.log, "telemetry", 0, 10, 10)
	ownerA, stopA := startOwner(t, a, "pi-b")
	_, stopF := startFollower(t, b, "pi-a", ownerA.Addr().String(), replica)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	stopF.stop(t)
	stopA.stop(t)
	// ... and pi-a loses only its metadata, keeping a log with records.
	a.meta.Close()
	a.meta = nil
	a.close()
	dir := a.dir
	a.dir = t.TempDir()
	copyDir(t, dir+"/log", a.dir+"/log")
	a.open()
	cfg.Config, cfg.Log = a.config(), a.log
	if _, err := peer.Restore(context.Background(), cfg); !errors.Is(err, peer.ErrRestoreConflict) {
		t.Fatalf("log without epoch: Restore = %v, want ErrRestoreConflict", err)
	}
}
