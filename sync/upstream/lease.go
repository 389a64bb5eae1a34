package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// ErrLeaseHeld: another node holds the lease (see *LeaseHeldError).
var ErrLeaseHeld = errors.New("upstream: lease held by another node")

// ErrLeaseLost: the lease expired or was taken since it was acquired or
// last renewed. Its holder must stop forwarding at once; its in-flight
// publishes are refused by their expected last subject sequence.
var ErrLeaseLost = errors.New("upstream: lease lost")

// LeaseHeldError names the holder of a lease that Acquire could not take.
type LeaseHeldError struct {
	Key    string
	Holder string
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("upstream: lease %s is held by %s", e.Key, e.Holder)
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// Leases are the forwarding leases in the centre's KV bucket
// (wire.LeaseBucket): compare-and-set on the key's revision decides who
// holds one, and the bucket's MaxAge expires a lease its holder stopped
// renewing. Taking a lease needs the uplink, which forwarding needs anyway:
// a node that cannot reach the lease bucket cannot forward either.
type Leases struct {
	kv  jetstream.KeyValue
	ttl time.Duration
}

// OpenLeases binds the lease bucket, or creates it with time to live ttl
// if it does not exist. The bucket has one MaxAge for every node of every
// site, so an existing bucket's TTL wins over ttl (TTL says which).
func OpenLeases(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (*Leases, error) {
	if ttl < time.Second {
		return nil, fmt.Errorf("upstream: lease ttl %v is below 1s", ttl)
	}
	kv, err := js.KeyValue(ctx, wire.LeaseBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      wire.LeaseBucket,
			Description: "Outpost forwarding leases: which node forwards each origin node's partitions",
			History:     1,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, wire.LeaseBucket) // another node made it first
		}
	}
	if err != nil {
		return nil, fmt.Errorf("upstream: lease bucket %s: %w", wire.LeaseBucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("upstream: lease bucket %s: %w", wire.LeaseBucket, err)
	}
	if st.TTL() < time.Second {
		return nil, fmt.Errorf("upstream: lease bucket %s has time to live %v: leases would never expire (or at once); delete the bucket so that it is made again", wire.LeaseBucket, st.TTL())
	}
	return &Leases{kv: kv, ttl: st.TTL()}, nil
}

// TTL is the leases' time to live: a holder renews well within it.
func (ls *Leases) TTL() time.Duration { return ls.ttl }

// Lease is one held lease.
type Lease struct {
	ls     *Leases
	key    string
	holder string
	value  []byte
	rev    uint64
}

// Acquire takes the lease on forwarding origin site/node for holder. It
// succeeds if nobody holds it (never taken, released or expired) or if
// holder itself does (a restart: the previous process's lease is taken
// over by revision). Otherwise it returns a *LeaseHeldError.
func (ls *Leases) Acquire(ctx context.Context, site, node, holder string) (*Lease, error) {
	key := wire.LeaseKey(site, node)
	value, err := json.Marshal(wire.Lease{Holder: holder, Since: time.Now().UTC()})
	if err != nil {
		return nil, err
	}
	for attempt := 0; attempt < 5; attempt++ {
		rev, err := ls.kv.Create(ctx, key, value)
		if err == nil {
			return &Lease{ls: ls, key: key, holder: holder, value: value, rev: rev}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("upstream: acquire lease %s: %w", key, err)
		}
		e, err := ls.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired or released between Create and Get
		}
		if err != nil {
			return nil, fmt.Errorf("upstream: acquire lease %s: %w", key, err)
		}
		var cur wire.Lease
		if err := json.Unmarshal(e.Value(), &cur); err != nil || cur.Holder != holder {
			held := cur.Holder
			if err != nil {
				held = fmt.Sprintf("an unreadable value (%v)", err)
			}
			return nil, &LeaseHeldError{Key: key, Holder: held}
		}
		rev, err = ls.kv.Update(ctx, key, value, e.Revision())
		if err == nil {
			return &Lease{ls: ls, key: key, holder: holder, value: value, rev: rev}, nil
		}
		if !isWrongRevision(err) {
			return nil, fmt.Errorf("upstream: acquire lease %s: %w", key, err)
		}
	}
	return nil, fmt.Errorf("upstream: acquire lease %s: it kept changing under five attempts", key)
}

// Take takes the lease on forwarding origin site/node for holder whoever
// holds it: an origin node forwarding its own partitions has priority over
// a peer that took over while it was away. prev names the holder it was
// taken from ("" if nobody held it, or holder itself). The peer learns it
// at its next renewal (ErrLeaseLost), and its publishes in flight are
// fenced by their expected last subject sequence.
func (ls *Leases) Take(ctx context.Context, site, node, holder string) (l *Lease, prev string, err error) {
	key := wire.LeaseKey(site, node)
	value, err := json.Marshal(wire.Lease{Holder: holder, Since: time.Now().UTC()})
	if err != nil {
		return nil, "", err
	}
	for attempt := 0; attempt < 5; attempt++ {
		rev, err := ls.kv.Create(ctx, key, value)
		if err == nil {
			return &Lease{ls: ls, key: key, holder: holder, value: value, rev: rev}, "", nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, "", fmt.Errorf("upstream: take lease %s: %w", key, err)
		}
		e, err := ls.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("upstream: take lease %s: %w", key, err)
		}
		var cur wire.Lease
		if json.Unmarshal(e.Value(), &cur) == nil && cur.Holder != holder {
			prev = cur.Holder
		}
		rev, err = ls.kv.Update(ctx, key, value, e.Revision())
		if err == nil {
			return &Lease{ls: ls, key: key, holder: holder, value: value, rev: rev}, prev, nil
		}
		if !isWrongRevision(err) {
			return nil, "", fmt.Errorf("upstream: take lease %s: %w", key, err)
		}
	}
	return nil, "", fmt.Errorf("upstream: take lease %s: it kept changing under five attempts", key)
}

// Renew extends the lease by its time to live. ErrLeaseLost means it
// expired or another node took it: stop forwarding.
func (l *Lease) Renew(ctx context.Context) error {
	rev, err := l.ls.kv.Update(ctx, l.key, l.value, l.rev)
	if err != nil {
		if isWrongRevision(err) || errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s (held by %s since revision %d)", ErrLeaseLost, l.key, l.holder, l.rev)
		}
		return fmt.Errorf("upstream: renew lease %s: %w", l.key, err)
	}
	l.rev = rev
	return nil
}

// Release gives the lease up, if it is still held (a lost lease is not
// touched: its new holder's is another revision).
func (l *Lease) Release(ctx context.Context) error {
	err := l.ls.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
	if err != nil && !isWrongRevision(err) {
		return fmt.Errorf("upstream: release lease %s: %w", l.key, err)
	}
	return nil
}

// Holder is the node holding the lease.
func (l *Lease) Holder() string { return l.holder }

// Revision is the lease's KV revision: it changes at every renewal and
// orders holders over time.
func (l *Lease) Revision() uint64 { return l.rev }

// isWrongRevision reports a compare-and-set refused because the key moved
// (the same server answer as a conditional publish that found the stream
// moved).
func isWrongRevision(err error) bool {
	return isStreamMoved(err) || errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}
