package log

import (
	"fmt"
	"regexp"
	"sync/atomic"
)

// Hold is one reader's claim on one partition: the lowest offset it still
// needs. Retention by bytes or age deletes only segments that end at or
// below every hold of their partition; the disk budget's delete-oldest
// policy deletes segments nobody holds first and, when it must go below a
// hold, counts the records per holder (outpost_log_hold_overridden_records_total)
// and logs them.
//
// The forwarder holds from its first unacknowledged offset; a replica (the
// replica's node) from the end it has fetched; a downlink or local consumer
// from its committed position. Each owner keeps its own hold current with
// Set; the log never persists a hold. An owner whose position must survive
// a restart persists it itself (the forwarder's cursor in edge/meta) and
// sets the hold from it when it starts; Config.Holders covers the time
// before it does.
//
// A Hold is safe for concurrent use. Set is one atomic store: an owner may
// call it on every acknowledgement.
type Hold struct {
	p      *Partition
	name   string
	offset atomic.Int64
}

// holdNameRE: a holder name is a metric label value and a log field, and
// will name holds in the HTTP API: 1–128 of [A-Za-z0-9._:/-], such as
// "upstream" or "replica/pi-b".
var holdNameRE = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)

func validHoldName(name string) bool { return holdNameRE.MatchString(name) }

// Hold returns the partition's hold named name, creating it if there is
// none. A new hold holds the whole partition (offset 0) until its owner
// calls Set. Holds are found by name: one owner per name is the caller's
// contract, as with a cursor name.
func (p *Partition) Hold(name string) (*Hold, error) {
	if !validHoldName(name) {
		return nil, fmt.Errorf("%w: %q", ErrBadHoldName, name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holdLocked(name), nil
}

// holdLocked returns or adds the hold named name. mu must be held.
func (p *Partition) holdLocked(name string) *Hold {
	old := p.holdList()
	for _, h := range old {
		if h.name == name {
			return h
		}
	}
	h := &Hold{p: p, name: name}
	holds := make([]*Hold, len(old), len(old)+1)
	copy(holds, old)
	holds = append(holds, h)
	p.holds.Store(&holds)
	return h
}

// holdList returns the partition's holds. The slice is never modified:
// changes replace it (copy on write), so retention reads it without locks.
func (p *Partition) holdList() []*Hold {
	if hs := p.holds.Load(); hs != nil {
		return *hs
	}
	return nil
}

// Name returns the holder's name.
func (h *Hold) Name() string { return h.name }

// Offset returns the lowest offset the holder still needs.
func (h *Hold) Offset() int64 { return h.offset.Load() }

// Set records the lowest offset the holder still needs: retention may
// delete what lies below it. It may move either way (a forwarder that must
// resend sets it back); offsets below the partition's start are gone
// already, and an offset at or past the end holds nothing.
func (h *Hold) Set(offset int64) { h.offset.Store(offset) }

// Release removes the hold: retention stops keeping records for it. A
// released hold's Set has no effect on retention; Partition.Hold with the
// same name creates a new hold (at offset 0). Release is idempotent.
func (h *Hold) Release() {
	p := h.p
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.holdList()
	holds := make([]*Hold, 0, len(old))
	for _, o := range old {
		if o != h {
			holds = append(holds, o)
		}
	}
	p.holds.Store(&holds)
}

// holdPoint is one hold's offset, read once, so that one decision of
// retention sees one value per holder.
type holdPoint struct {
	name   string
	offset int64
}

// holdPoints reads the partition's holds now, and the lowest offset among
// them (the highest int64 if there are none: nothing is held).
func (p *Partition) holdPoints() (points []holdPoint, lowest int64) {
	lowest = 1<<63 - 1
	for _, h := range p.holdList() {
		off := h.Offset()
		points = append(points, holdPoint{h.name, off})
		lowest = min(lowest, off)
	}
	return points, lowest
}
