package upstream

import (
	"context"

	"github.com/outpost-edge/outpost/edge/log"
)

// source is what the forwarder needs of one log partition; *log.Partition
// satisfies it.
type source interface {
	Read(ctx context.Context, from int64, maxBytes int) ([]log.Record, error)
	// Notify returns a channel closed once a record at offset is readable
	// or the source closes.
	Notify(offset int64) <-chan struct{}
	StartOffset() int64
	EndOffset() int64
}

// Watermark says how far a partition may be forwarded; *peer.Owner
// satisfies it. ok false: no limit (a partition nobody replicates).
type Watermark interface {
	HighWatermark(topic string, partition int32) (hw int64, ok bool)
	// HighWatermarkChanged is closed when a high watermark may have moved.
	HighWatermarkChanged() <-chan struct{}
}

// holder is an optional extra of a source: a retention hold named after
// the cursor, kept at the first offset not yet acknowledged by the stream
// (edge/log's Partition.Hold).
type holder interface {
	Hold(name string) (*log.Hold, error)
}

// sizer is an optional extra of a source: its bytes on disk, for the lag in
// bytes estimate.
type sizer interface{ Bytes() int64 }

// lister finds the partitions to forward; *log.Log satisfies it through
// logLister.
type lister interface {
	partitions() []partKey
	open(topic string, partition int32) (source, error)
}

type logLister struct{ l *log.Log }

func (ll logLister) partitions() []partKey {
	var out []partKey
	for _, t := range ll.l.Topics() {
		for _, p := range t.Partitions {
			out = append(out, partKey{t.Name, p.Partition})
		}
	}
	return out
}

func (ll logLister) open(topic string, partition int32) (source, error) {
	return ll.l.Partition(topic, partition)
}

// metaStore keeps what the forwarder owns besides the log: the forwarding
// cursors, the resends armed but not yet done and the origin pin (small
// key/value buckets); *meta.Store satisfies it.
type metaStore interface {
	SetCursor(ctx context.Context, name, topic string, partition int32, offset int64) error
	Cursor(ctx context.Context, name, topic string, partition int32) (int64, bool, error)
	Put(ctx context.Context, bucket, key string, value []byte) error
	Get(ctx context.Context, bucket, key string) ([]byte, bool, error)
	Delete(ctx context.Context, bucket, key string) error
}

type partKey struct {
	topic string
	part  int32
}

var (
	_ source = (*log.Partition)(nil)
	_ holder = (*log.Partition)(nil)
)
