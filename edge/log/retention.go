package log

import (
	"context"
	"os"
	"time"
)

// EnforceRetention deletes sealed segments that retention by bytes or age no
// longer keeps, never the active segment and never a segment holding an
// offset some Hold still needs. It runs every RetentionCheckInterval; tests
// and tools may call it directly. It returns the number of segments deleted
// and sets outpost_log_hold_retained_bytes for every holder.
func (l *Log) EnforceRetention(ctx context.Context) int {
	l.budgetMu.Lock()
	defer l.budgetMu.Unlock()
	l.mu.RLock()
	type tp struct {
		cfg TopicConfig
		ps  []*Partition
	}
	var work []tp
	for _, t := range l.topics {
		work = append(work, tp{t.cfg, t.partitions})
	}
	l.mu.RUnlock()
	now := l.cfg.Now()
	deleted := 0
	retained := make(map[string]int64) // holder -> bytes kept for it
	for _, w := range work {
		for _, p := range w.ps {
			if ctx.Err() != nil {
				return deleted
			}
			for _, h := range p.holdList() {
				retained[h.name] += 0 // every holder gets a value, 0 if it keeps nothing
			}
			if w.cfg.RetentionBytes == 0 && w.cfg.RetentionAge == 0 {
				continue
			}
			deleted += p.retain(w.cfg, now, retained)
		}
	}
	l.setHoldRetained(retained)
	return deleted
}

// setHoldRetained publishes the bytes kept per holder and drops the series
// of holders no partition has any more. budgetMu must be held.
func (l *Log) setHoldRetained(retained map[string]int64) {
	for name := range l.holdGauges {
		if _, ok := retained[name]; !ok {
			l.metrics.holdRetained.DeleteLabelValues(name)
			delete(l.holdGauges, name)
		}
	}
	for name, n := range retained {
		l.metrics.holdRetained.WithLabelValues(name).Set(float64(n))
		l.holdGauges[name] = struct{}{}
	}
}

// retain deletes the oldest sealed segments retention allows and no hold
// needs, and adds to retained, per holder, the bytes of the segments
// retention would delete but holds keep. budgetMu must be held.
func (p *Partition) retain(tc TopicConfig, now time.Time, retained map[string]int64) int {
	p.mu.Lock()
	segs := append([]*segment(nil), p.segments[:len(p.segments)-1]...)
	p.mu.Unlock()
	holds, heldFrom := p.holdPoints()
	remaining := p.bytes.Load()
	n := 0
	// Held segments found at open may be opened to learn their newest
	// timestamp: close them again, so that open files do not grow with the
	// backlog a holder keeps.
	defer p.trimOpen()
	for _, s := range segs {
		size := s.size.Load() + indexHeaderSize + s.idxEntries.Load()*indexEntrySize
		var reason string
		switch {
		case tc.RetentionBytes > 0 && remaining > tc.RetentionBytes:
			reason = "retention_bytes"
		case tc.RetentionAge > 0 && p.segmentMaxTs(s) < now.Add(-tc.RetentionAge).UnixNano():
			reason = "retention_age"
		}
		if reason == "" {
			break
		}
		remaining -= size
		if end := s.end.Load(); end > heldFrom {
			// Held, and so is every later segment (they end later): keep
			// walking only to say how much each holder keeps.
			for _, h := range holds {
				if h.offset < end {
					retained[h.name] += size
				}
			}
			continue
		}
		n++
		p.deleteOldest(1, reason)
	}
	return n
}

// segmentMaxTs returns a sealed segment's largest record timestamp,
// computing it once for segments found at open.
func (p *Partition) segmentMaxTs(s *segment) int64 {
	if mt := s.maxTs.Load(); mt != minTs {
		return mt
	}
	if !s.acquire() {
		return minTs
	}
	defer s.release()
	f, err := s.logFile(p.useTick.Add(1))
	if err != nil {
		return minTs
	}
	e, err := s.lookupIndex(s.idxEntries.Load(), func(indexEntry) bool { return true })
	if err != nil {
		return minTs
	}
	mt := e.maxTsBefore
	limit := s.size.Load()
	var rb readBuf
	for pos := int64(e.pos); pos < limit; {
		b, n, err := p.frameAt(f, s, pos, limit, &rb)
		if err != nil {
			break
		}
		mt = max(mt, b.MaxTimestamp)
		pos += int64(n)
	}
	s.maxTs.Store(mt)
	return mt
}

// deleteOldest removes the partition's n oldest segments (never the active
// one): out of the list first, so new readers skip them, then off the disk.
// Readers still holding a segment keep its open file until they release it.
func (p *Partition) deleteOldest(n int, reason string) int {
	p.mu.Lock()
	n = min(n, len(p.segments)-1)
	if n <= 0 {
		p.mu.Unlock()
		return 0
	}
	gone := append([]*segment(nil), p.segments[:n]...)
	p.segments = append([]*segment(nil), p.segments[n:]...)
	p.start.Store(p.segments[0].base)
	p.mu.Unlock()
	cfg := &p.log.cfg
	for _, s := range gone {
		size := s.size.Load() + indexHeaderSize + s.idxEntries.Load()*indexEntrySize
		s.deleted.Store(true)
		if err := os.Remove(s.logPath); err != nil && !os.IsNotExist(err) {
			cfg.Logger.Warn("log: remove segment", "segment", s.logPath, "err", err)
		}
		os.Remove(s.idxPath)
		p.addBytes(-size)
		s.release()
		p.log.metrics.segmentsDeleted.WithLabelValues(reason).Inc()
		cfg.Logger.Info("log: deleted segment", "topic", p.topic, "partition", p.id,
			"segment", s.logPath, "base_offset", s.base, "end_offset", s.end.Load(), "bytes", size, "reason", reason)
	}
	if err := syncDir(p.dir); err != nil {
		cfg.Logger.Warn("log: sync dir after delete", "dir", p.dir, "err", err)
	}
	return n
}

// makeRoom deletes the node's oldest sealed segments, those no hold needs
// first, until need more bytes fit in the budget or nothing sealed is left.
// Records a holder still needed are counted and logged per holder.
func (l *Log) makeRoom(need int64, _ *Partition) {
	l.budgetMu.Lock()
	defer l.budgetMu.Unlock()
	for l.bytes.Load()+need > l.cfg.DiskBudgetBytes {
		var best *Partition
		var bestSeg *segment
		var bestHolds []holdPoint
		bestTs, bestFree := int64(0), false
		for _, p := range l.allPartitions() {
			p.mu.Lock()
			if len(p.segments) < 2 {
				p.mu.Unlock()
				continue
			}
			s := p.segments[0]
			p.mu.Unlock()
			holds, heldFrom := p.holdPoints()
			free := s.end.Load() <= heldFrom
			ts := p.segmentMaxTs(s)
			if best == nil || free && !bestFree || free == bestFree && ts < bestTs {
				best, bestSeg, bestHolds, bestTs, bestFree = p, s, holds, ts, free
			}
		}
		if best == nil {
			return
		}
		reason := "budget"
		if !bestFree {
			reason = "budget_unforwarded"
			l.overrideHolds(best, bestSeg, bestHolds)
		}
		best.deleteOldest(1, reason)
	}
}

// overrideHolds counts and logs, per holder, the records of s it still
// needed and the disk budget is about to delete.
func (l *Log) overrideHolds(p *Partition, s *segment, holds []holdPoint) {
	end := s.end.Load()
	for _, h := range holds {
		if h.offset >= end {
			continue
		}
		from := max(h.offset, s.base)
		l.metrics.holdOverridden.WithLabelValues(h.name).Add(float64(end - from))
		l.cfg.Logger.Warn("log: disk budget reached: deleting records a reader still needs (policy delete-oldest)",
			"holder", h.name, "topic", p.topic, "partition", p.id, "from_offset", from, "end_offset", end, "records", end-from)
	}
}

func (l *Log) budgetRefusedLog(p *Partition, n int) {
	now := time.Now().UnixNano()
	last := l.lastBudgetLog.Load()
	if now-last < int64(10*time.Second) || !l.lastBudgetLog.CompareAndSwap(last, now) {
		return
	}
	l.cfg.Logger.Warn("log: disk budget reached: refusing appends (policy refuse)",
		"topic", p.topic, "partition", p.id, "refused", n, "bytes", l.bytes.Load(), "budget", l.cfg.DiskBudgetBytes)
}
