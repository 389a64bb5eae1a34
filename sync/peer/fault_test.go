package peer_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
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
	owner, _ := startOwner(t, a, "pi-b")
	proxy := newFaultProxy(t, owner.Addr().String())
	replica := b.replicaLog("pi-a")
	startFollower(t, b, "pi-a", proxy.Addr(), replica)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ingestErr error
	wg.Add(1)
	go func() { // ingest for the whole test, as devices would
		defer wg.Done()
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		for ctx.Err() == nil {
			if err := appendRecords(a.log, "telemetry", int32(r.IntN(4)), 1+r.IntN(20), 10+r.IntN(3000)); err != nil {
				ingestErr = err
				return
			}
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
	n := checkPrefix(t, a.log, replica)
	t.Logf("%d records replicated through %d faults", n, rounds)
	if n == 0 {
		t.Fatal("nothing was replicated")
	}
}
