package peer_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/sync/peer"
)

// TestReplicateThroughFaults ingests into the owner while a fault proxy
// between the nodes cuts, cuts one way, delays and flaps the link; after
// healing, every replica partition is a record-for-record prefix of its
// owner's and catches up to its end. Randomized: the seed is printed; set
// OUTPOST_LONG=1 for more rounds.
func TestReplicateThroughFaults(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	rounds := 6
	if longTests() {
		rounds = 60
	}
	a := openNode(t, "pi-a", t.TempDir())
	b := openNode(t, "pi-b", t.TempDir())
	createTopic(t, a.log, "telemetry", 4)
	// acks: all with policy refuse: every acknowledgement the owner gives
	// must find the record on the replica already, through every fault.
	owner, _ := startOwnerCfg(t, a, func(c *peer.OwnerConfig) {
		c.Policy = peer.PolicyRefuse
		c.LagMax = 500 * time.Millisecond
	}, "pi-b")
	proxy := newFaultProxy(t, owner.Addr().String())
	replica := b.replicaLog("pi-a")
	startFollower(t, b, "pi-a", proxy.Addr(), replica)

	ctx, cancel := context.WithCancel(context.Background())
	var acks sync.WaitGroup
	var replicated, refused, unreplicated atomic.Int64
	var wg sync.WaitGroup
	var ingestErr error
	wg.Add(1)
	go func() { // ingest for the whole test, as devices would
		defer wg.Done()
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		for ctx.Err() == nil {
			part := int32(r.IntN(4))
			end, err := appendRecordsEnd(a.log, "telemetry", part, 1+r.IntN(20), 10+r.IntN(500))
			if err != nil {
				ingestErr = err
				return
			}
			acks.Add(1)
			owner.Await("telemetry", part, end, func(err error) {
				defer acks.Done()
				if err != nil {
					refused.Add(1)
					return
				}
				replicated.Add(1)
				if p, perr := replica.Partition("telemetry", part); perr != nil || p.EndOffset() < end {
					unreplicated.Add(1)
				}
			})
			time.Sleep(time.Millisecond)
		}
	}()
	stopIngest := func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(stopIngest) // before the nodes close, should the test fail early
	faults := []struct {
		name string
		do   func()
	}{
		{"cut", proxy.Cut},
		{"one_way", proxy.OneWay},
		{"delay", func() { proxy.Delay(time.Duration(1+rng.IntN(20)) * time.Millisecond) }},
		{"flap", func() {
			for range 5 {
				proxy.Cut()
				time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
				proxy.Heal()
				time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
			}
		}},
	}
	for i := range rounds {
		f := faults[rng.IntN(len(faults))]
		t.Logf("round %d: %s", i, f.name)
		f.do()
		time.Sleep(time.Duration(50+rng.IntN(300)) * time.Millisecond)
		// During a fault the replica must still be a prefix.
		checkPrefix(t, a.log, replica)
		proxy.Heal()
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
	}
	stopIngest()
	if ingestErr != nil {
		t.Fatal(ingestErr)
	}
	waitCaughtUp(t, a.log, replica, 20*time.Second)
	acks.Wait() // every held acknowledgement is decided (released or refused)
	t.Logf("acks: %d replicated, %d refused", replicated.Load(), refused.Load())
	if unreplicated.Load() > 0 {
		t.Fatalf("%d acknowledgements were given before the replica had the record", unreplicated.Load())
	}
	if replicated.Load() == 0 {
		t.Fatal("no acknowledgement was given")
	}
	n := checkPrefix(t, a.log, replica)
	t.Logf("%d records replicated through %d faults", n, rounds)
	if n == 0 {
		t.Fatal("nothing was replicated")
	}
}
