package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// TestLeaseExclusive: a lease has one holder; another node is told who
// holds it; the holder renews it; once the holder stops renewing it
// expires within its time to live and another node takes it, and the old
// holder's renewal then fails with ErrLeaseLost. A restarted holder takes
// its own lease back at once; a released lease is free at once.
func TestLeaseExclusive(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx := context.Background()
	ttl := time.Second
	ls, err := upstream.OpenLeases(ctx, js, ttl)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ls.Acquire(ctx, "farm-1", "pi-a", "pi-b")
	if err != nil {
		t.Fatal(err)
	}
	var held *upstream.LeaseHeldError
	if _, err := ls.Acquire(ctx, "farm-1", "pi-a", "pi-c"); !errors.As(err, &held) || held.Holder != "pi-b" || !errors.Is(err, upstream.ErrLeaseHeld) {
		t.Fatalf("second node's acquire = %v, want held by pi-b", err)
	}
	for i := 0; i < 3; i++ { // renewals keep it past its ttl
		time.Sleep(ttl / 2)
		if err := a.Renew(ctx); err != nil {
			t.Fatalf("renew %d: %v", i, err)
		}
	}
	if _, err := ls.Acquire(ctx, "farm-1", "pi-a", "pi-c"); !errors.Is(err, upstream.ErrLeaseHeld) {
		t.Fatalf("acquire of a renewed lease = %v, want ErrLeaseHeld", err)
	}
	// pi-b stops renewing (it died): pi-c gets the lease within the ttl
	// plus the server's expiry sweep.
	start := time.Now()
	var c *upstream.Lease
	for c == nil {
		if time.Since(start) > 5*ttl {
			t.Fatalf("lease not free %v after its holder stopped renewing", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
		c, err = ls.Acquire(ctx, "farm-1", "pi-a", "pi-c")
		if err != nil && !errors.Is(err, upstream.ErrLeaseHeld) {
			t.Fatal(err)
		}
	}
	t.Logf("lease free %v after the last renewal (ttl %v)", time.Since(start), ttl)
	if err := a.Renew(ctx); !errors.Is(err, upstream.ErrLeaseLost) {
		t.Fatalf("the old holder's renew = %v, want ErrLeaseLost", err)
	}
	if err := a.Release(ctx); err != nil { // touches nothing: not its revision
		t.Fatal(err)
	}
	if err := c.Renew(ctx); err != nil {
		t.Fatalf("the new holder's renew after the old one's release: %v", err)
	}
	// pi-c restarts: its new process takes its own lease over.
	c2, err := ls.Acquire(ctx, "farm-1", "pi-a", "pi-c")
	if err != nil {
		t.Fatalf("restarted holder: %v", err)
	}
	if err := c.Renew(ctx); !errors.Is(err, upstream.ErrLeaseLost) {
		t.Fatalf("the previous process's renew = %v, want ErrLeaseLost", err)
	}
	if err := c2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Acquire(ctx, "farm-1", "pi-a", "pi-a"); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
}

// TestLeaseRace: nodes racing for one lease, round after round: exactly one
// wins each round, and every loser names the winner.
func TestLeaseRace(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx := context.Background()
	ls, err := upstream.OpenLeases(ctx, js, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, 3))
	t.Logf("seed %d", seed)
	for round := 0; round < 20; round++ {
		n := 2 + rnd.IntN(4)
		node := fmt.Sprintf("origin-%d", round)
		var mu sync.Mutex
		var wg sync.WaitGroup
		var winners []*upstream.Lease
		var holders []string
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := ls.Acquire(ctx, "site", node, fmt.Sprintf("pi-%d", i))
				mu.Lock()
				defer mu.Unlock()
				var held *upstream.LeaseHeldError
				switch {
				case err == nil:
					winners = append(winners, l)
				case errors.As(err, &held):
					holders = append(holders, held.Holder)
				default:
					t.Errorf("round %d: %v", round, err)
				}
			}()
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d of %d racers won, want exactly 1", round, len(winners), n)
		}
		for _, h := range holders {
			if h != winners[0].Holder() {
				t.Fatalf("round %d: a loser was told the holder is %q, the winner is %q", round, h, winners[0].Holder())
			}
		}
	}
}
