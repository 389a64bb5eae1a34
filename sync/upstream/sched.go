package upstream

import (
	"context"
	"sync"
	"time"
)

// scheduler shares the uplink between partitions: a token bucket for the
// optional bandwidth cap, and "live first": a partition that is caught up
// (lag at or below Config.LiveLagRecords) is served before backlogged ones.
//
// Within one partition order always wins over freshness: a backlogged
// partition's newest record waits behind its oldest, because offsets go
// upstream strictly in order (G2, G3). Live first is between partitions.
type scheduler struct {
	rate  float64 // bytes per second; 0 means no cap
	burst float64

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	liveActive int           // live partitions publishing now
	wake       chan struct{} // closed and replaced when liveActive drops or tokens may suffice
}

func newScheduler(bytesPerSec int64) *scheduler {
	s := &scheduler{rate: float64(bytesPerSec), wake: make(chan struct{}), last: time.Now()}
	if s.rate > 0 {
		// A tenth of a second of credit: enough to send whole messages
		// without stuttering, small enough that the cap holds over a second.
		s.burst = max(s.rate/10, 4096)
		s.tokens = s.burst
	}
	return s
}

// broadcastLocked wakes every waiter. mu must be held.
func (s *scheduler) broadcastLocked() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// enterLive marks a live partition as publishing: backlogged partitions
// hold off until exitLive.
func (s *scheduler) enterLive() {
	s.mu.Lock()
	s.liveActive++
	s.mu.Unlock()
}

func (s *scheduler) exitLive() {
	s.mu.Lock()
	s.liveActive--
	if s.liveActive == 0 {
		s.broadcastLocked()
	}
	s.mu.Unlock()
}

// acquire waits until n bytes may be sent. Live callers are never held back
// by backlogged ones; backlogged callers wait while any live partition is
// publishing. A message larger than the burst is let through when the bucket
// is full and leaves it in debt, so any size gets through and the average
// rate still holds.
func (s *scheduler) acquire(ctx context.Context, n int, live bool) error {
	// A live partition waiting for tokens counts as active, so backlogged
	// partitions do not take the tokens it waits for.
	registered := false
	defer func() {
		if registered {
			s.exitLive()
		}
	}()
	for {
		s.mu.Lock()
		var wait time.Duration
		blocked := !live && s.liveActive > 0
		if !blocked {
			if s.rate == 0 {
				s.mu.Unlock()
				return nil
			}
			now := time.Now()
			s.tokens = min(s.burst, s.tokens+now.Sub(s.last).Seconds()*s.rate)
			s.last = now
			need := min(float64(n), s.burst)
			if s.tokens >= need {
				s.tokens -= float64(n)
				s.mu.Unlock()
				return nil
			}
			wait = time.Duration((need - s.tokens) / s.rate * float64(time.Second))
			if live && !registered {
				registered = true
				s.liveActive++
			}
		}
		ch := s.wake
		s.mu.Unlock()
		var t *time.Timer
		var timer <-chan time.Time
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-ch:
		case <-timer:
		case <-ctx.Done():
		}
		if t != nil {
			t.Stop()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
