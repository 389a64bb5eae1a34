package meta

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// CursorRef names one cursor position.
type CursorRef struct {
	Name string
	PartitionKey
}

// CursorClamp is one cursor moved back to its partition's end.
type CursorClamp struct {
	CursorRef
	Old, New int64
}

// ClampResult says what Clamp did.
type ClampResult struct {
	// Clamped lists the cursors moved back to their partition's end offset.
	Clamped []CursorClamp
	// Orphans lists the cursors of partitions the log does not have; they
	// are kept (the topic may come back, and deleting positions is for an
	// operator to decide).
	Orphans []CursorRef
}

// ClampCursors is Clamp for callers that need only the count of cursors
// moved.
func (s *Store) ClampCursors(ctx context.Context, end func(topic string, partition int32) (int64, bool)) (clamped int, err error) {
	r, err := s.Clamp(ctx, end)
	return len(r.Clamped), err
}

// Clamp moves every cursor that points past its partition's end offset
// back to that end, in one transaction, logging each move (warn, with the
// old and new offsets). end returns a partition's recovered log end offset,
// or false if the log has no such partition; such cursors are kept and
// logged. Call it at node open, after the log has recovered and before
// anything reads a cursor: a cursor past the end means records it counted
// were lost in a torn tail, and a forwarder must not skip the offsets that
// will be written again. end runs inside the store's write transaction: it
// must not call the Store (a write would deadlock).
func (s *Store) Clamp(ctx context.Context, end func(topic string, partition int32) (int64, bool)) (ClampResult, error) {
	var res ClampResult
	err := s.update(ctx, func(tx *bolt.Tx) error {
		res = ClampResult{} // a retried transaction starts over
		cursors := tx.Bucket(bucketCursors)
		return cursors.ForEach(func(name, v []byte) error {
			if v != nil {
				return nil
			}
			b := cursors.Bucket(name)
			type fix struct {
				key []byte
				c   CursorClamp
			}
			var fixes []fix
			// Collect first: bbolt forbids Put while a ForEach walks the bucket.
			err := b.ForEach(func(k, v []byte) error {
				pk, err := decodeCursorKey(k)
				if err != nil {
					return err
				}
				off, err := decodeCursor(v)
				if err != nil {
					return err
				}
				ref := CursorRef{Name: string(name), PartitionKey: pk}
				e, ok := end(pk.Topic, pk.Partition)
				switch {
				case !ok:
					res.Orphans = append(res.Orphans, ref)
				case off > e:
					fixes = append(fixes, fix{key: clone(k), c: CursorClamp{CursorRef: ref, Old: off, New: e}})
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("cursor %s: %w", name, err)
			}
			for _, f := range fixes {
				if err := b.Put(f.key, encodeCursor(f.c.New)); err != nil {
					return err
				}
				res.Clamped = append(res.Clamped, f.c)
			}
			return nil
		})
	})
	if err != nil {
		return ClampResult{}, fmt.Errorf("meta: clamp cursors: %w", err)
	}
	for _, c := range res.Clamped {
		s.log.Warn("meta: cursor pointed past the recovered log end; clamped to it (records after it were lost in a torn tail and will be written again)",
			"cursor", c.Name, "topic", c.Topic, "partition", c.Partition, "old", c.Old, "new", c.New)
	}
	for _, o := range res.Orphans {
		s.log.Warn("meta: cursor for a partition the log does not have; kept",
			"cursor", o.Name, "topic", o.Topic, "partition", o.Partition)
	}
	return res, nil
}
