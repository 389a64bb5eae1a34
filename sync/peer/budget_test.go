package peer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/internal/polltest"
	"github.com/outpost-edge/outpost/internal/ratelimit"
	"github.com/outpost-edge/outpost/sync/peer"
)

// countingBudget passes every request to a real shared budget and counts
// the bytes asked for.
type countingBudget struct {
	lane  *ratelimit.Lane
	bytes atomic.Int64
}

func (b *countingBudget) Wait(ctx context.Context, n int) error {
	b.bytes.Add(int64(n))
	return b.lane.Wait(ctx, n)
}

// TestOwnerServesWithinItsBudget: with a byte budget (the peer links'
// share of the site link), every fetch response waits for its bytes
// before it goes out: the budget was asked for at least the bytes of the
// records replicated, and the replica is still an exact prefix.
func TestOwnerServesWithinItsBudget(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 2)
	appendN(t, a.log, "telemetry", 0, 300, 1000)
	appendN(t, a.log, "telemetry", 1, 200, 1000)
	budget := &countingBudget{lane: ratelimit.NewShared(4 << 20).Lane("peers")}
	owner, _ := startOwnerCfg(t, a, func(c *peer.OwnerConfig) { c.Budget = budget }, "pi-b")
	replica := b.replicaLog("pi-a")
	startFollower(t, b, "pi-a", owner.Addr().String(), replica)
	waitCaughtUp(t, a.log, replica, 20*time.Second)
	n := checkPrefix(t, a.log, replica)
	if got := budget.bytes.Load(); got < n*1000 {
		t.Fatalf("the budget was asked for %d bytes; %d records of 1000 bytes were served", got, n)
	}
}

// TestOwnerHighWatermark: the high watermark the forwarder reads below is
// the owner's end while no follower is in sync, moves with the follower's
// acknowledgements (the change channel closes), and is not reported for a
// partition the owner does not serve.
func TestOwnerHighWatermark(t *testing.T) {
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 1)
	appendN(t, a.log, "telemetry", 0, 50, 100)
	owner, _ := startOwner(t, a, "pi-b")
	if hw, ok := owner.HighWatermark("telemetry", 0); !ok || hw != 50 {
		t.Fatalf("before any follower: hw %d %v, want the end 50", hw, ok)
	}
	if _, ok := owner.HighWatermark("nope", 0); ok {
		t.Fatal("a high watermark for a partition the owner does not serve")
	}
	changed := owner.HighWatermarkChanged()
	replica := b.replicaLog("pi-a")
	startFollower(t, b, "pi-a", owner.Addr().String(), replica)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the change channel did not close while the follower acknowledged")
	}
	appendN(t, a.log, "telemetry", 0, 20, 100)
	waitCaughtUp(t, a.log, replica, 10*time.Second)
	polltest.Until(t, 5*time.Second, func() error {
		if hw, _ := owner.HighWatermark("telemetry", 0); hw != 70 {
			return errorf("hw %d, want 70", hw)
		}
		return nil
	})
}
