package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Shared is a budget of bytes per second shared by lanes.
type Shared struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	lanes   []*Lane
	changed chan struct{} // closed and replaced when waiters may proceed
}

// Lane is one user of a Shared budget.
type Lane struct {
	s       *Shared
	name    string
	waiting int   // Waits in progress (s.mu)
	granted int64 // bytes granted since the lanes last contended (s.mu)
}

// NewShared returns a budget of bytesPerSec (> 0) with a tenth of a
// second of burst.
func NewShared(bytesPerSec int64) *Shared {
	s := &Shared{rate: float64(bytesPerSec), now: time.Now, changed: make(chan struct{})}
	s.burst = max(s.rate/10, 4096)
	s.tokens = s.burst
	s.last = s.now()
	return s
}

// Lane returns a new lane named name.
func (s *Shared) Lane(name string) *Lane {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := &Lane{s: s, name: name}
	s.lanes = append(s.lanes, l)
	return l
}

// Name is the lane's name.
func (l *Lane) Name() string { return l.name }

// Wait blocks until n bytes may be sent on the lane, or ctx ends.
func (l *Lane) Wait(ctx context.Context, n int) error {
	s := l.s
	s.mu.Lock()
	l.waiting++
	for {
		now := s.now()
		s.tokens = min(s.burst, s.tokens+now.Sub(s.last).Seconds()*s.rate)
		s.last = now
		if s.tokens > 0 && s.turnLocked(l) {
			s.tokens -= float64(n)
			l.granted += int64(n)
			l.waiting--
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			return nil
		}
		wait := time.Millisecond
		if s.tokens <= 0 {
			wait = max(wait, time.Duration(-s.tokens/s.rate*float64(time.Second)))
		}
		ch := s.changed
		s.mu.Unlock()
		err := s.wait(ctx, ch, wait)
		s.mu.Lock()
		if err != nil {
			l.waiting--
			s.mu.Unlock()
			return err
		}
	}
}

// wait sleeps for d, or until a grant on any lane (the turn may be ours
// now), or until ctx ends.
func (s *Shared) wait(ctx context.Context, changed <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// turnLocked reports whether l may take the next grant: it is the only
// lane waiting, or among the waiting lanes it got the fewest bytes. When a
// lane waits alone the counts restart, so a lane that was idle does not
// make up for its idle time. s.mu must be held.
func (s *Shared) turnLocked(l *Lane) bool {
	others := false
	for _, o := range s.lanes {
		if o != l && o.waiting > 0 {
			others = true
			if o.granted < l.granted {
				return false
			}
		}
	}
	if !others {
		for _, o := range s.lanes {
			o.granted = 0
		}
	}
	return true
}
