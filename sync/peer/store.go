package peer

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
)

// Store is where epochs and epoch histories persist: edge/meta's key/value
// area (meta.Store satisfies it). Put must be durable when it returns
// (bbolt fsyncs every transaction), because an epoch reused after a crash
// would let a stale owner's records pass for current ones.
type Store interface {
	Get(ctx context.Context, bucket, key string) ([]byte, bool, error)
	Put(ctx context.Context, bucket, key string, value []byte) error
}

// Buckets and keys in the Store:
//
//	peer            "epoch"               → the owner's current epoch, u64 BE
//	peer            "h/<topic>/<p>"       → the owner's history of a partition
//	peer.<owner>    "epoch"               → the highest epoch of owner this node has seen
//	peer.<owner>    "h/<topic>/<p>"       → this node's copy of owner's history
const ownBucket = "peer"

func replicaBucket(owner string) string { return "peer." + owner }

func historyKey(topic string, partition int32) string {
	return "h/" + topic + "/" + strconv.Itoa(int(partition))
}

const epochKey = "epoch"

func loadEpoch(ctx context.Context, s Store, bucket string) (uint64, error) {
	v, ok, err := s.Get(ctx, bucket, epochKey)
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("peer: stored epoch in %s has %d bytes, want 8", bucket, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func storeEpoch(ctx context.Context, s Store, bucket string, e uint64) error {
	return s.Put(ctx, bucket, epochKey, binary.BigEndian.AppendUint64(nil, e))
}

func loadHistory(ctx context.Context, s Store, bucket, topic string, partition int32) (history, error) {
	v, ok, err := s.Get(ctx, bucket, historyKey(topic, partition))
	if err != nil || !ok {
		return nil, err
	}
	return unmarshalHistory(v)
}

func storeHistory(ctx context.Context, s Store, bucket, topic string, partition int32, h history) error {
	return s.Put(ctx, bucket, historyKey(topic, partition), h.marshal())
}
