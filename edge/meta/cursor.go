package meta

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// PartitionKey names a partition of a topic.
type PartitionKey struct {
	Topic     string
	Partition int32
}

func (k PartitionKey) String() string { return fmt.Sprintf("%s/%d", k.Topic, k.Partition) }

// SetCursor stores the position of the cursor name (a consumer or
// forwarder: "upstream", "peer:node-b", ...) in a partition: the next
// offset it will read. It returns once the position is durable. Calls from
// many goroutines share one transaction and one fsync (db.Batch), so a
// forwarder may commit after every acknowledged batch.
func (s *Store) SetCursor(ctx context.Context, name, topic string, partition int32, offset int64) error {
	if err := checkName("cursor", name); err != nil {
		return err
	}
	if err := checkTopic(topic); err != nil {
		return err
	}
	if err := checkPartition(partition); err != nil {
		return err
	}
	if offset < 0 {
		return fmt.Errorf("%w: cursor %s %s/%d: offset %d is negative", ErrBadValue, name, topic, partition, offset)
	}
	key, val := cursorKey(topic, partition), encodeCursor(offset)
	// Idempotent, as Batch requires: it may run again after a failed batch.
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketCursors).CreateBucketIfNotExists([]byte(name))
		if err != nil {
			return err
		}
		return b.Put(key, val)
	})
	if err != nil {
		return fmt.Errorf("meta: set cursor %s %s/%d: %w", name, topic, partition, err)
	}
	return nil
}

// Cursor returns a cursor's position in a partition; ok is false if it was
// never set.
func (s *Store) Cursor(ctx context.Context, name, topic string, partition int32) (offset int64, ok bool, err error) {
	err = s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCursors).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		v := b.Get(cursorKey(topic, partition))
		if v == nil {
			return nil
		}
		offset, err = decodeCursor(v)
		ok = err == nil
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("meta: get cursor %s %s/%d: %w", name, topic, partition, err)
	}
	return offset, ok, nil
}

// Cursors returns every position of the cursor name; the map is empty if
// it has none.
func (s *Store) Cursors(ctx context.Context, name string) (map[PartitionKey]int64, error) {
	out := make(map[PartitionKey]int64)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCursors).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			pk, err := decodeCursorKey(k)
			if err != nil {
				return err
			}
			off, err := decodeCursor(v)
			if err != nil {
				return err
			}
			out[pk] = off
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("meta: list cursor %s: %w", name, err)
	}
	return out, nil
}

// CursorNames returns the names of every cursor that has a position,
// sorted.
func (s *Store) CursorNames(ctx context.Context) ([]string, error) {
	var out []string
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCursors).ForEach(func(k, v []byte) error {
			if v == nil { // nested bucket
				out = append(out, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("meta: list cursor names: %w", err)
	}
	return out, nil
}

// DeleteCursor forgets a cursor's position in a partition. Deleting a
// missing one is not an error.
func (s *Store) DeleteCursor(ctx context.Context, name, topic string, partition int32) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCursors).Bucket([]byte(name))
		if b == nil {
			return nil
		}
		return b.Delete(cursorKey(topic, partition))
	})
	if err != nil {
		return fmt.Errorf("meta: delete cursor %s %s/%d: %w", name, topic, partition, err)
	}
	return nil
}

// DeleteCursors forgets every position of the cursor name.
func (s *Store) DeleteCursors(ctx context.Context, name string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCursors)
		if b.Bucket([]byte(name)) == nil {
			return nil
		}
		return b.DeleteBucket([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("meta: delete cursor %s: %w", name, err)
	}
	return nil
}
