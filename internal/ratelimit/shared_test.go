package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTurnGoesToTheLaneBehind: while lanes contend, the next grant goes to
// the waiting lane that got the fewest bytes; a lane alone takes it, and
// the counts restart then.
func TestTurnGoesToTheLaneBehind(t *testing.T) {
	s := NewShared(1 << 20)
	a, b := s.Lane("uplink"), s.Lane("peers")
	a.waiting, b.waiting = 1, 1
	a.granted, b.granted = 5000, 1000
	if s.turnLocked(a) || !s.turnLocked(b) {
		t.Fatal("the lane with more bytes got the turn")
	}
	b.waiting = 0
	if !s.turnLocked(a) {
		t.Fatal("a lane waiting alone did not get the turn")
	}
	if a.granted != 0 || b.granted != 0 {
		t.Fatalf("counts did not restart: %d %d", a.granted, b.granted)
	}
}

// TestSharedSplitsAndCaps: two lanes sending flat out through a 2 MB/s
// budget for 600 ms: together they stay near the cap (not more than the
// burst plus the rate over the period), and each gets a fair share (the
// split is by the deficit rule, so it does not depend on the machine's
// speed; the bounds are wide). A lane alone gets all of it.
func TestSharedSplitsAndCaps(t *testing.T) {
	const rate = 2 << 20
	s := NewShared(rate)
	lanes := []*Lane{s.Lane("uplink"), s.Lane("peers")}
	var got [2]atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, l := range lanes {
		size := []int{16 << 10, 64 << 10}[i] // unequal message sizes
		wg.Go(func() {
			for l.Wait(ctx, size) == nil {
				got[i].Add(int64(size))
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	total := got[0].Load() + got[1].Load()
	if limit := int64(s.burst + rate*el + 64<<10); total > limit {
		t.Fatalf("%d bytes in %.2fs through a %d B/s budget (limit %d)", total, el, rate, limit)
	}
	share := float64(got[0].Load()) / float64(total)
	t.Logf("uplink %d B, peers %d B in %.2fs (%.0f%% / %.0f%%)", got[0].Load(), got[1].Load(), el, 100*share, 100*(1-share))
	if share < 0.3 || share > 0.7 {
		t.Fatalf("unfair split: uplink %.0f%%", 100*share)
	}
	// Alone, a lane is not held to half.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	var alone int64
	for lanes[0].Wait(ctx2, 16<<10) == nil {
		alone += 16 << 10
	}
	if alone < rate/10 {
		t.Fatalf("a lane alone got %d bytes in 300ms of a %d B/s budget", alone, rate)
	}
}
