package peer

import (
	"errors"
	"time"
)

// Policy is what replication.acks: all does with a record when fewer than
// MinInSync followers are in sync.
type Policy int

const (
	// PolicyDegrade acknowledges on the owner's durability alone; the
	// partition counts as under-replicated until its followers catch up.
	PolicyDegrade Policy = iota
	// PolicyRefuse refuses the acknowledgement (ErrNotReplicated to the
	// waiter): the device keeps its data.
	PolicyRefuse
)

// String is the policy's config value.
func (p Policy) String() string {
	if p == PolicyRefuse {
		return "refuse"
	}
	return "degrade"
}

// Errors Await completes with.
var (
	// ErrNotReplicated: too few followers in sync under PolicyRefuse.
	ErrNotReplicated = errors.New("peer: too few replicas in sync")
	// ErrOwnerStopped: the owner stopped before the record was replicated.
	ErrOwnerStopped = errors.New("peer: owner stopped")
)

// waiter is an acknowledgement held until the partition's high watermark
// reaches end.
type waiter struct {
	end  int64
	done func(error)
}

// Await calls done once records below end of the partition are durable on
// every in-sync follower (the high watermark reached end) and at least
// MinInSync followers are in sync — the acks: all rule. With fewer in sync,
// the policy decides at once: degrade calls done(nil), refuse
// done(ErrNotReplicated); a waiting record is decided again when followers
// fall out of sync (checked every second). done is called exactly once,
// never under a lock of the owner's, possibly before Await returns; Await
// never blocks (it runs on the log's committer goroutine).
func (o *Owner) Await(topic string, partition int32, end int64, done func(error)) {
	op := o.parts[partKey{topic, partition}]
	if op == nil {
		// Not one of the partitions the owner serves (created after it
		// started): nobody replicates it; the policy decides.
		done(o.verdict())
		return
	}
	op.mu.Lock()
	if op.stopped {
		op.mu.Unlock()
		done(ErrOwnerStopped)
		return
	}
	ri := op.stateLocked(o.cfg, time.Now())
	switch {
	case ri.HighWatermark >= end && !ri.UnderRep:
		op.mu.Unlock()
		o.cfg.Metrics.acks.WithLabelValues("replicated").Inc()
		done(nil)
		return
	case ri.UnderRep:
		op.mu.Unlock()
		done(o.verdict())
		return
	}
	op.waiters = append(op.waiters, waiter{end: end, done: done})
	op.mu.Unlock()
	o.cfg.Metrics.acksWaiting.Inc()
}

// verdict applies the policy to a record that cannot wait for replicas.
func (o *Owner) verdict() error {
	if o.cfg.Policy == PolicyRefuse {
		o.cfg.Metrics.acks.WithLabelValues("refused").Inc()
		return ErrNotReplicated
	}
	o.cfg.Metrics.acks.WithLabelValues("degraded").Inc()
	return nil
}

// releaseLocked takes the waiters the partition's state now decides: those
// below the high watermark, or all of them when too few followers are in
// sync. The caller runs the returned completions after unlocking op.mu.
func (o *Owner) releaseLocked(op *ownedPart, now time.Time) []func() {
	if len(op.waiters) == 0 {
		return nil
	}
	ri := op.stateLocked(o.cfg, now)
	var out []func()
	keep := op.waiters[:0]
	for _, w := range op.waiters {
		switch {
		case ri.UnderRep:
			out = append(out, func() { w.done(o.verdict()) })
		case ri.HighWatermark >= w.end:
			out = append(out, func() {
				o.cfg.Metrics.acks.WithLabelValues("replicated").Inc()
				w.done(nil)
			})
		default:
			keep = append(keep, w)
		}
	}
	clear(op.waiters[len(keep):])
	op.waiters = keep
	o.cfg.Metrics.acksWaiting.Sub(float64(len(out)))
	return out
}

// release decides op's waiters now (after a follower's fetch, or on the
// refresher's tick).
func (o *Owner) release(op *ownedPart, now time.Time) {
	op.mu.Lock()
	fns := o.releaseLocked(op, now)
	op.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

// stopWaiters fails every waiting acknowledgement once the owner stops, so
// that no publish waits forever; later Awaits fail at once.
func (o *Owner) stopWaiters() {
	for _, op := range o.parts {
		op.mu.Lock()
		ws := op.waiters
		op.waiters, op.stopped = nil, true
		op.mu.Unlock()
		o.cfg.Metrics.acksWaiting.Sub(float64(len(ws)))
		for _, w := range ws {
			w.done(ErrOwnerStopped)
		}
	}
}
