package upstream

import (
	"context"
	"sync"
	"time"
)

// scheduler shares the uplink between partitions: a token bucket for the
// optional bandwidth cap, a budget of bytes published and not yet
// acknowledged (nats.go keeps every pending message until its ack, so this
// is what bounds the forwarder's memory whatever the number of partitions),
// and "live first": a partition that is caught up (lag at or below
// Config.LiveLagRecords) is served before backlogged ones.
//
// Within one partition order always wins over freshness: a backlogged
// partition's newest record waits behind its oldest, because offsets go
// upstream strictly in order (G2, G3). Live first is between partitions.
type scheduler struct {
	rate        float64 // bytes per second; 0 means no cap
	burst       float64
	maxInflight int
	budget      Budget // shared with other users of the link; nil: none

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	inflight   int           // bytes acquired and not released
	liveActive int           // live partitions publishing or waiting to
	wake       chan struct{} // closed and replaced when waiters may proceed
}

// Budget is a byte budget the forwarder shares with other users of the
// node's links (internal/ratelimit's Lane): Wait blocks until n bytes may
// be sent.
type Budget interface {
	Wait(ctx context.Context, n int) error
}

func newScheduler(bytesPerSec int64, maxInflight int, budget Budget) *scheduler {
	if budget != nil {
		bytesPerSec = 0 // the shared budget is the cap
	}
	s := &scheduler{rate: float64(bytesPerSec), maxInflight: maxInflight, budget: budget, wake: make(chan struct{}), last: time.Now()}
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

// release returns n bytes of the in-flight budget (acknowledged, failed or
// abandoned messages).
func (s *scheduler) release(n int) {
	if n == 0 {
		return
	}
	s.mu.Lock()
	s.inflight -= n
	s.broadcastLocked()
	s.mu.Unlock()
}

// acquire waits until n bytes may be published, and takes them from the
// in-flight budget (give them back with release). Live callers are never
// held back by backlogged ones; backlogged callers wait while any live
// partition is publishing or waiting. A message larger than the burst or
// the budget is let through when the bucket is full or nothing else is in
// flight, so any size gets through.
func (s *scheduler) acquire(ctx context.Context, n int, live bool) error {
	// A live partition that has to wait counts as active, so backlogged
	// partitions do not take what it waits for.
	registered := false
	defer func() {
		if registered {
			s.exitLive()
		}
	}()
	for {
		s.mu.Lock()
		var wait time.Duration
		blocked := (!live && s.liveActive > 0) || (s.inflight > 0 && s.inflight+n > s.maxInflight)
		if !blocked {
			if s.rate == 0 {
				s.inflight += n
				s.mu.Unlock()
				if s.budget != nil {
					if err := s.budget.Wait(ctx, n); err != nil {
						s.release(n)
						return err
					}
				}
				return nil
			}
			now := time.Now()
			s.tokens = min(s.burst, s.tokens+now.Sub(s.last).Seconds()*s.rate)
			s.last = now
			need := min(float64(n), s.burst)
			if s.tokens >= need {
				s.tokens -= float64(n)
				s.inflight += n
				s.mu.Unlock()
				return nil
			}
			wait = time.Duration((need - s.tokens) / s.rate * float64(time.Second))
		}
		if live && !registered {
			registered = true
			s.liveActive++
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
