package peer_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/polltest"
	"github.com/outpost-edge/outpost/sync/peer"
)

// TestAwaitFollowerDies: an acknowledgement held for a follower that
// stops fetching is decided once the follower drops out of sync (LagMax):
// degrade releases it, refuse fails it with ErrNotReplicated. One that the
// follower copies is released as replicated.
func TestAwaitFollowerDies(t *testing.T) {
	for _, policy := range []peer.Policy{peer.PolicyDegrade, peer.PolicyRefuse} {
		t.Run(policy.String(), func(t *testing.T) {
			a := openNode(t, "pi-a", t.TempDir())
			b := openNode(t, "pi-b", t.TempDir())
			createTopic(t, a.log, "telemetry", 1)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := a.config()
			cfg.LagMax = 300 * time.Millisecond
			owner, err := peer.NewOwner(context.Background(), peer.OwnerConfig{Config: cfg, Log: a.log, Listener: ln, Followers: []string{"pi-b"}, Policy: policy})
			if err != nil {
				t.Fatal(err)
			}
			run(t, owner.Run)
			replica := b.replicaLog("pi-a")
			_, follower := startFollower(t, b, "pi-a", owner.Addr().String(), replica)
			waitInSync := func() {
				polltest.Until(t, 10*time.Second, func() error {
					if ri, _ := owner.Replica("telemetry", 0); len(ri.InSync) != 1 {
						return errorf("not in sync: %+v", ri)
					}
					return nil
				})
			}
			waitInSync()

			// Replicated: the follower copies the record, then the ack comes.
			appendN(t, a.log, "telemetry", 0, 1, 10)
			got := make(chan error, 1)
			owner.Await("telemetry", 0, 1, func(err error) { got <- err })
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("replicated record: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("replicated record not acknowledged")
			}
			if p, _ := replica.Partition("telemetry", 0); p.EndOffset() < 1 {
				t.Fatal("acknowledged before the replica had the record")
			}

			// The follower dies: the held acknowledgement waits, then the
			// policy decides.
			follower.stop(t)
			appendN(t, a.log, "telemetry", 0, 1, 10)
			owner.Await("telemetry", 0, 2, func(err error) { got <- err })
			select {
			case err := <-got:
				if policy == peer.PolicyDegrade && err != nil {
					t.Fatalf("degrade: %v, want nil", err)
				}
				if policy == peer.PolicyRefuse && !errors.Is(err, peer.ErrNotReplicated) {
					t.Fatalf("refuse: %v, want ErrNotReplicated", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("held acknowledgement never decided after the follower died")
			}
		})
	}
}

// TestOwnerStartsUnderReplicated: before any follower has fetched, the
// under-replicated gauge counts every partition — from NewOwner on, not
// only from the refresher's first pass — and drops to 0 once the follower
// is in sync.
func TestOwnerStartsUnderReplicated(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	owner, err := peer.NewOwner(context.Background(), peer.OwnerConfig{Config: a.config(), Log: a.log, Listener: ln, Followers: []string{"pi-b"}, MinInSync: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := metric(t, a, "outpost_replica_under_replicated_partitions"); got != 3 {
		t.Fatalf("under-replicated partitions before Run: %v, want 3", got)
	}
	run(t, owner.Run)
	startFollower(t, b, "pi-a", owner.Addr().String(), b.replicaLog("pi-a"))
	polltest.Until(t, 10*time.Second, func() error {
		if got := metric(t, a, "outpost_replica_under_replicated_partitions"); got != 0 {
			return errorf("under-replicated partitions: %v", got)
		}
		return nil
	})
}
