package upstream

import (
	"context"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
)

// PartitionLag is one partition's forwarding state at one moment.
type PartitionLag struct {
	Topic     string
	Partition int32
	// StartOffset and EndOffset are the log's readable range.
	StartOffset, EndOffset int64
	// ForwardedOffset is the next offset to forward: every record below it
	// is acknowledged by the stream. -1 until the partition has resolved
	// where to resume (then the cursor store's value is not known here).
	ForwardedOffset int64
	// LagRecords is EndOffset - max(ForwardedOffset, StartOffset).
	LagRecords int64
	// LagBytes estimates the log bytes of those records.
	LagBytes int64
	// OldestUnforwardedAge is how old the record at ForwardedOffset is, by
	// its timestamp; 0 when nothing waits.
	OldestUnforwardedAge time.Duration
	// Live tells whether the partition counts as caught up (scheduled first).
	Live bool
	// Error says why forwarding is paused, "" while it runs.
	Error string
}

// Lag returns every known partition's forwarding state, sorted by topic and
// partition. It reads at most one record per lagging partition (for the
// oldest record's age).
func (f *Forwarder) Lag() []PartitionLag {
	ps := f.partitionsSorted()
	out := make([]PartitionLag, 0, len(ps))
	now := time.Now()
	for _, p := range ps {
		out = append(out, p.lag(now))
	}
	return out
}

// statusLoop sends a wire.Status every StatusInterval while connected, and
// one as soon as the link (re)connects, so core sees the node as soon as it
// is back.
func (f *Forwarder) statusLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.StatusInterval)
	defer t.Stop()
	var seen uint64 // the link's connects reported on
	for {
		changed := f.link.Changed()
		if n := f.link.Connects(); n != seen && f.link.Conn() != nil {
			seen = n
			f.publishStatus()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.publishStatus()
		case <-changed:
		}
	}
}

// publishStatus sends a wire.Status if connected. Losing one is harmless:
// the next replaces it.
func (f *Forwarder) publishStatus() {
	c := f.link.Conn()
	if c == nil {
		return
	}
	lags := f.Lag()
	if len(lags) > wire.MaxStatusPartitions {
		lags = lags[:wire.MaxStatusPartitions]
	}
	by := f.cfg.ForwardedBy
	if by == "" {
		by = f.cfg.Node
	}
	st := wire.Status{Version: wire.StatusVersion, Site: f.cfg.Site, Node: f.cfg.Node, ForwardedBy: by, Time: time.Now().UTC(),
		Partitions: make([]wire.PartitionStatus, 0, len(lags))}
	for _, l := range lags {
		st.Partitions = append(st.Partitions, wire.PartitionStatus{
			Topic: l.Topic, Partition: l.Partition, EndOffset: l.EndOffset,
			ForwardedOffset: max(l.ForwardedOffset, 0), LagRecords: l.LagRecords, LagBytes: l.LagBytes,
			OldestUnforwardedAgeMs: max(l.OldestUnforwardedAge.Milliseconds(), 0), Error: l.Error,
		})
	}
	if err := wire.PublishStatus(c.nc, f.cfg.Prefix, st); err != nil {
		f.log.Debug("upstream: status report not sent", "err", err)
	}
}

// lag describes the partition now.
func (p *partition) lag(now time.Time) PartitionLag {
	start, end := p.src.StartOffset(), p.src.EndOffset()
	acked := p.acked.Load()
	l := PartitionLag{Topic: p.origin.Topic, Partition: p.origin.Partition, StartOffset: start, EndOffset: end, ForwardedOffset: acked}
	from := max(acked, start)
	if acked < 0 {
		if c := p.committed.Load(); c >= 0 {
			from = max(c, start)
		}
	}
	l.LagRecords = max(end-from, 0)
	if s, ok := p.src.(sizer); ok && end > start {
		l.LagBytes = int64(float64(s.Bytes()) * float64(l.LagRecords) / float64(end-start))
	}
	p.mu.Lock()
	l.Error = p.errText
	l.Live = p.live
	cached := p.headOff == from
	ts := p.headTS
	p.mu.Unlock()
	if l.LagRecords > 0 {
		if !cached {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			recs, err := p.src.Read(ctx, from, 1)
			cancel()
			if err == nil && len(recs) > 0 {
				ts = recs[0].Timestamp
				p.mu.Lock()
				p.headOff, p.headTS = from, ts
				p.mu.Unlock()
				cached = true
			}
		}
		if cached && ts > 0 {
			l.OldestUnforwardedAge = max(now.Sub(time.Unix(0, ts)), 0)
		}
	}
	return l
}
