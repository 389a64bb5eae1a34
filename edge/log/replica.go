package log

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotContiguous: AppendAt was asked to write records at an offset other
// than the partition's end. A replica that got it is out of step with its
// owner (or has a second writer) and must resynchronise, never append.
var ErrNotContiguous = errors.New("log: append not contiguous with the partition's end")

// AppendAt appends records that must land at offset first, the partition's
// end: a site replica (sync/peer) copies its owner's records to the same
// offsets, so that a replica is a prefix of its owner's partition (G2 on
// replicas). It returns after the records are durable under the sync
// policy, like Append, and ErrNotContiguous without writing anything when
// first is not the end.
//
// A replica partition must have one writer that waits for each AppendAt
// before the next: the end is checked before the records are queued, so a
// concurrent Append could slip in between. Should that happen the records
// land elsewhere and AppendAt reports ErrNotContiguous after the write; the
// caller must stop writing to that partition. ctx should not be cancelled
// while the append is in flight (use context.WithoutCancel): an abandoned
// append may still land later, and the writer could no longer know the end.
func (p *Partition) AppendAt(ctx context.Context, first int64, recs []Record) error {
	if end := p.EndOffset(); end != first {
		return fmt.Errorf("%w: %s/%d: append at %d, end is %d", ErrNotContiguous, p.topic, p.id, first, end)
	}
	got, err := p.Append(ctx, recs)
	if err != nil {
		return err
	}
	if got != first {
		return fmt.Errorf("%w: %s/%d: records landed at %d, not %d (a second writer appended to a replica)", ErrNotContiguous, p.topic, p.id, got, first)
	}
	return nil
}
