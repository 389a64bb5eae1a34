package meta

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Put stores value under key in a named bucket of the generic key/value
// area (for later users: the schema cache, replica state). The value is
// stored as given; the caller owns its format and should version it. The
// value is copied: the caller may reuse the slice after Put returns.
func (s *Store) Put(ctx context.Context, bucket, key string, value []byte) error {
	if err := checkName("bucket", bucket); err != nil {
		return err
	}
	if key == "" || len(key) > maxKeyBytes {
		return fmt.Errorf("%w: key of %d bytes: want 1–%d", ErrBadName, len(key), maxKeyBytes)
	}
	if value == nil {
		// bbolt stores a nil value as empty; say so rather than surprise.
		value = []byte{}
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketKV).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		return b.Put([]byte(key), value)
	})
	if err != nil {
		return fmt.Errorf("meta: put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Get returns a copy of the value under key in a bucket, and whether there
// was one.
func (s *Store) Get(ctx context.Context, bucket, key string) ([]byte, bool, error) {
	var out []byte
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			out, ok = clone(v), true
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("meta: get %s/%s: %w", bucket, key, err)
	}
	return out, ok, nil
}

// Delete removes key from a bucket. Deleting a missing key is not an error.
func (s *Store) Delete(ctx context.Context, bucket, key string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("meta: delete %s/%s: %w", bucket, key, err)
	}
	return nil
}

// All returns copies of every key and value of a bucket; the map is empty
// if the bucket has none. Buckets are meant to be small (a schema cache).
func (s *Store) All(ctx context.Context, bucket string) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if v != nil {
				out[string(k)] = clone(v)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("meta: list %s: %w", bucket, err)
	}
	return out, nil
}

// Apply stores puts and removes deletes in one bucket in one transaction,
// so a crash leaves all of the change or none of it (the schema cache
// writes a subject record and the schemas it names together). Values are
// copied and stored as given.
func (s *Store) Apply(ctx context.Context, bucket string, puts map[string][]byte, deletes []string) error {
	if err := checkName("bucket", bucket); err != nil {
		return err
	}
	for k := range puts {
		if k == "" || len(k) > maxKeyBytes {
			return fmt.Errorf("%w: key of %d bytes: want 1–%d", ErrBadName, len(k), maxKeyBytes)
		}
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketKV).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		for _, k := range deletes {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		for k, v := range puts {
			if v == nil {
				v = []byte{}
			}
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("meta: apply %s: %w", bucket, err)
	}
	return nil
}
