package peer

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// ackCounters are outpost_replication_acks_total's children, looked up
// once: an acknowledgement is counted on the ingest path.
type ackCounters struct {
	replicated, degraded, refused prometheus.Counter
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
		done(o.verdict(1))
		return
	}
	op.mu.Lock()
	if op.stopped {
		op.mu.Unlock()
		done(ErrOwnerStopped)
		return
	}
	hw, under := op.hwLocked(o.cfg, time.Now())
	switch {
	case hw >= end && !under:
		op.mu.Unlock()
		o.acked.replicated.Inc()
		done(nil)
		return
	case under:
		op.mu.Unlock()
		done(o.verdict(1))
		return
	}
	op.waiters = append(op.waiters, waiter{end: end, done: done})
	op.mu.Unlock()
	o.cfg.Metrics.acksWaiting.Inc()
}

// verdict applies the policy to n records that cannot wait for replicas.
func (o *Owner) verdict(n int) error {
	if o.cfg.Policy == PolicyRefuse {
		o.acked.refused.Add(float64(n))
		return ErrNotReplicated
	}
	o.acked.degraded.Add(float64(n))
	return nil
}

// releaseLocked takes the waiters the partition's state now decides: those
// below the high watermark, or all of them when too few followers are in
// sync (under). The caller completes them after unlocking op.mu.
func (o *Owner) releaseLocked(op *ownedPart, now time.Time) (ws []waiter, under bool) {
	if len(op.waiters) == 0 {
		return nil, false
	}
	hw, under := op.hwLocked(o.cfg, now)
	keep := op.waiters[:0]
	for _, w := range op.waiters {
		if under || hw >= w.end {
			ws = append(ws, w)
		} else {
			keep = append(keep, w)
		}
	}
	clear(op.waiters[len(keep):])
	op.waiters = keep
	o.cfg.Metrics.acksWaiting.Sub(float64(len(ws)))
	return ws, under
}

// complete calls the done functions of released waiters.
func (o *Owner) complete(ws []waiter, under bool) {
	if len(ws) == 0 {
		return
	}
	var err error
	if under {
		err = o.verdict(len(ws))
	} else {
		o.acked.replicated.Add(float64(len(ws)))
	}
	for _, w := range ws {
		w.done(err)
	}
}

// release decides op's waiters now (after a follower's fetch, or on the
// refresher's tick).
func (o *Owner) release(op *ownedPart, now time.Time) {
	op.mu.Lock()
	ws, under := o.releaseLocked(op, now)
	op.mu.Unlock()
	o.complete(ws, under)
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
