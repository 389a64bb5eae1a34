package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/backoff"
)

// partition forwards one log partition. Only its run goroutine sends; the
// fields below mu are read by Lag from other goroutines.
type partition struct {
	f *Forwarder
	// origin names the partition upstream (site, node, topic, partition):
	// its subject, Nats-Msg-Ids and provisioning requests. It is the
	// partition's, not the forwarder's, so that forwarding another node's
	// partitions from a replica is a matter of configuration.
	origin  wire.Origin
	src     source
	enc     *wire.Encoder
	subject string
	// expect is the subject conditional publishes name
	// (Nats-Expected-Last-Subject-Sequence-Subject): subject, or in a
	// stream with buckets the same with a wildcard for the bucket. Set by
	// resolve.
	expect string
	stream string
	pkey   string // partition label value

	running bool // a run goroutine is active; guarded by Forwarder.mu

	// acked is the next offset to forward: every record below it is in the
	// stream. -1 until the first resolve. Set it with setAcked.
	acked atomic.Int64
	// hold keeps retention off the records not yet forwarded (nil if the
	// source keeps no holds); setAcked moves it with acked.
	hold *log.Hold
	// committed is the last value written to the cursor store, -1 none.
	committed atomic.Int64

	mu      sync.Mutex
	errKind errKind // why forwarding is paused; kindNone while it runs
	errText string
	live    bool
	headOff int64 // offset whose timestamp headTS caches, -1 none
	headTS  int64

	// Owned by run (see resend.go): a resend armed by abort, whether one
	// is saved in the store and until which offset, and whether the store
	// was asked for one a previous process saved (once per partition and
	// process; later ones are known in memory).
	redo         *redo
	redoSaved    bool
	redoUntil    int64
	redoLoaded   bool
	warnedWindow bool // the short duplicate window warning was logged
	// atomicOK: the stream allows atomic batches (read at every resolve;
	// Config.Fenced sends one message per round trip without them).
	atomicOK     bool
	warnedAtomic bool
}

func newPartition(f *Forwarder, o wire.Origin, src source) (*partition, error) {
	enc, err := wire.NewEncoder(f.cfg.Prefix, o)
	if err != nil {
		return nil, err
	}
	p := &partition{f: f, origin: o, src: src, enc: enc, subject: enc.Subject(), expect: enc.Subject(),
		stream: wire.StreamName(f.cfg.Prefix, o.Topic), pkey: strconv.FormatInt(int64(o.Partition), 10), headOff: -1}
	p.acked.Store(-1)
	p.committed.Store(-1)
	if h, ok := src.(holder); ok {
		if p.hold, err = h.Hold(f.cfg.CursorName); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// visibleEnd is the offset forwarding may read up to: the log's end, or
// below it the high watermark (Config.Watermark).
func (p *partition) visibleEnd() int64 {
	end := p.src.EndOffset()
	if wm := p.f.cfg.Watermark; wm != nil {
		if hw, ok := wm.HighWatermark(p.origin.Topic, p.origin.Partition); ok && hw < end {
			return hw
		}
	}
	return end
}

// setAcked moves acked, and the retention hold with it.
func (p *partition) setAcked(next int64) {
	p.acked.Store(next)
	if p.hold != nil {
		p.hold.Set(next)
	}
}

// holdFromCursor sets the retention hold from the cursor store before the
// first resolve, so that retention keeps what was not forwarded before a
// restart but may delete what was (the hold starts at 0, everything, and
// stays there if the store cannot say).
func (p *partition) holdFromCursor(ctx context.Context) {
	if p.hold == nil {
		return
	}
	off, ok, err := p.f.store.Cursor(ctx, p.f.cfg.CursorName, p.origin.Topic, p.origin.Partition)
	if err == nil && ok {
		p.hold.Set(off)
	}
}

func sortPartitions(ps []*partition) {
	slices.SortFunc(ps, func(a, b *partition) int {
		if c := strings.Compare(a.origin.Topic, b.origin.Topic); c != 0 {
			return c
		}
		return int(a.origin.Partition) - int(b.origin.Partition)
	})
}

// run is the partition's loop: resolve where to resume, pump, and on any
// error pause with backoff and start over from what the stream holds.
func (p *partition) run(ctx context.Context) {
	attempt := 0
	for {
		c, err := p.f.link.Wait(ctx)
		if err != nil {
			return
		}
		progressed, err := p.forward(ctx, c)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			attempt = 0
		}
		if errors.Is(err, errStreamMoved) {
			// Messages of an earlier connection landed after the resume
			// point was read: read it again (not an error; see pump).
			p.f.m.resumes.WithLabelValues("moved").Inc()
			p.f.log.Debug("upstream: the stream moved while resuming; resolving again", "topic", p.origin.Topic, "partition", p.origin.Partition, "err", err)
			backoff.Sleep(ctx, p.f.backoff.Delay(0))
			continue
		}
		kind := p.setError(err)
		if kind == kindDisconnected {
			// Link.Wait does the waiting; a short jitter keeps partitions
			// from resolving all at once on reconnect.
			backoff.Sleep(ctx, p.f.backoff.Delay(0))
			continue
		}
		backoff.Sleep(ctx, p.f.backoff.Delay(attempt))
		attempt++
	}
}

// forward resolves the resume point and pumps until an error. It reports
// whether any message was acknowledged.
func (p *partition) forward(ctx context.Context, c *Conn) (bool, error) {
	// The epoch is read before the link is checked, so a window never
	// starts on a connection dialled after that check (see gate).
	epoch := c.Epoch()
	if !c.Up() {
		return false, ErrNotConnected
	}
	d, lastSeq, err := p.resolve(ctx, c)
	if err != nil {
		return false, err
	}
	// A pause for a lost link ends once the stream answered again: an idle
	// partition may send nothing for hours, and would otherwise show as
	// paused (outpost_upstream_partition_paused) all that time. Other
	// pauses end at the first acknowledgement, which proves the cause gone.
	p.mu.Lock()
	disconnected := p.errKind == kindDisconnected
	p.mu.Unlock()
	if disconnected {
		p.setError(nil)
	}
	return p.pump(ctx, c, epoch, d.next, d.cuts, lastSeq)
}

// setError records why forwarding paused, counts it, and logs it only when
// the kind changes (including back to running).
func (p *partition) setError(err error) errKind {
	kind := classify(err)
	if kind == kindTimeout && p.f.link.permissionDeniedSince(2*p.f.cfg.AckTimeout+time.Second) {
		// The server drops a publish it refuses for permissions and only
		// tells the connection's error handler; the publish then times out.
		kind = kindPermission
	}
	p.mu.Lock()
	prev := p.errKind
	p.errKind = kind
	p.errText = ""
	if err != nil {
		p.errText = string(kind) + ": " + err.Error()
	}
	p.mu.Unlock()
	if kind == kindNone {
		if prev != kindNone && prev != kindDisconnected {
			p.f.log.Info("upstream: forwarding resumed", "topic", p.origin.Topic, "partition", p.origin.Partition, "was", string(prev))
		}
		return kind
	}
	p.f.m.publishErrors.WithLabelValues(string(kind)).Inc()
	// A disconnect is logged once for the connection, not per partition.
	if kind != prev && kind != kindDisconnected {
		lvl := p.f.log.Warn
		if kind == kindStreamMissing || kind == kindPermission || kind == kindOther {
			lvl = p.f.log.Error
		}
		lvl("upstream: forwarding paused", "topic", p.origin.Topic, "partition", p.origin.Partition, "stream", p.stream,
			"kind", string(kind), "err", err, "advice", advice(kind))
	}
	return kind
}

func (p *partition) commitCursor(ctx context.Context, off int64) error {
	if err := p.f.store.SetCursor(ctx, p.f.cfg.CursorName, p.origin.Topic, p.origin.Partition, off); err != nil {
		p.f.log.Warn("upstream: cursor not saved", "topic", p.origin.Topic, "partition", p.origin.Partition, "offset", off, "err", err)
		return fmt.Errorf("upstream: save cursor: %w", err)
	}
	// Concurrent commits (resolve and the cursor loop) may finish out of
	// order; the cursor loop writes again if the stored value is behind.
	p.committed.Store(off)
	return nil
}
