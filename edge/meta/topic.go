package meta

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Topic is a topic's stored config. The log holds the records; this is
// what the node creates them with and what survives a config change.
type Topic struct {
	// Name is the log topic name (edge/log's rules).
	Name string
	// Partitions is fixed at creation, as in the log.
	Partitions int32
	// RetentionBytes caps each partition's bytes; 0 means unlimited.
	RetentionBytes int64
	// RetentionAge deletes segments whose newest record is older; 0 means
	// unlimited.
	RetentionAge time.Duration
	// Schema names the schema subject payloads must match; "" means none.
	Schema string
	// Updated is when PutTopic last wrote it; set by the store.
	Updated time.Time
}

func (t Topic) validate() error {
	if err := checkTopic(t.Name); err != nil {
		return err
	}
	switch {
	case t.Partitions < 1 || t.Partitions > 4096:
		return fmt.Errorf("%w: topic %s: Partitions: %d is not between 1 and 4096", ErrBadValue, t.Name, t.Partitions)
	case t.RetentionBytes < 0:
		return fmt.Errorf("%w: topic %s: RetentionBytes: %d is negative", ErrBadValue, t.Name, t.RetentionBytes)
	case t.RetentionAge < 0:
		return fmt.Errorf("%w: topic %s: RetentionAge: %v is negative", ErrBadValue, t.Name, t.RetentionAge)
	case len(t.Schema) > 1024:
		return fmt.Errorf("%w: topic %s: Schema: %d bytes is above 1024", ErrBadValue, t.Name, len(t.Schema))
	}
	return nil
}

// PutTopic creates a topic's config or replaces it. An existing topic keeps
// its partition count: asking for another returns ErrPartitionCount.
func (s *Store) PutTopic(ctx context.Context, t Topic) error {
	if err := t.validate(); err != nil {
		return err
	}
	v, err := versionedJSON(topicV1, topicValue{
		Partitions:     t.Partitions,
		RetentionBytes: t.RetentionBytes,
		RetentionAgeNs: int64(t.RetentionAge),
		Schema:         t.Schema,
		Updated:        time.Now().UTC(),
	})
	if err != nil {
		return fmt.Errorf("meta: encode topic %s: %w", t.Name, err)
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTopics)
		if old := b.Get([]byte(t.Name)); old != nil {
			var ov topicValue
			if err := decodeVersionedJSON(old, topicV1, "topic "+t.Name, &ov); err != nil {
				return err
			}
			if ov.Partitions != t.Partitions {
				return fmt.Errorf("%w: %s has %d partitions, asked for %d; delete the topic (and its data) to change it",
					ErrPartitionCount, t.Name, ov.Partitions, t.Partitions)
			}
		}
		return b.Put([]byte(t.Name), v)
	})
	if err != nil {
		return fmt.Errorf("meta: put topic %s: %w", t.Name, err)
	}
	return nil
}

// Topic returns one topic's config.
func (s *Store) Topic(ctx context.Context, name string) (Topic, bool, error) {
	var t Topic
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTopics).Get([]byte(name))
		if v == nil {
			return nil
		}
		var err error
		t, err = decodeTopic(name, v)
		ok = err == nil
		return err
	})
	if err != nil {
		return Topic{}, false, fmt.Errorf("meta: get topic %s: %w", name, err)
	}
	return t, ok, nil
}

// Topics returns every topic's config, sorted by name.
func (s *Store) Topics(ctx context.Context) ([]Topic, error) {
	var out []Topic
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTopics).ForEach(func(k, v []byte) error {
			t, err := decodeTopic(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("meta: list topics: %w", err)
	}
	return out, nil
}

// DeleteTopic removes a topic's config. Deleting a missing topic is not an
// error. Cursors of the topic are kept: they belong to their owners, and
// ClampCursors reports them.
func (s *Store) DeleteTopic(ctx context.Context, name string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTopics).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("meta: delete topic %s: %w", name, err)
	}
	return nil
}

// decodeTopic decodes a stored topic; the result shares no memory with v.
func decodeTopic(name string, v []byte) (Topic, error) {
	var tv topicValue
	if err := decodeVersionedJSON(v, topicV1, "topic "+name, &tv); err != nil {
		return Topic{}, err
	}
	return Topic{
		Name:           name,
		Partitions:     tv.Partitions,
		RetentionBytes: tv.RetentionBytes,
		RetentionAge:   time.Duration(tv.RetentionAgeNs),
		Schema:         tv.Schema,
		Updated:        tv.Updated,
	}, nil
}
