package log

import (
	"context"
	"os"
	"time"
)

// EnforceRetention deletes sealed segments that retention by bytes or age no
// longer keeps, never the active segment and never a segment holding offsets
// at or above Config.Protect. It runs every RetentionCheckInterval; tests and
// tools may call it directly. It returns the number of segments deleted.
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
	for _, w := range work {
		if w.cfg.RetentionBytes == 0 && w.cfg.RetentionAge == 0 {
			continue
		}
		for _, p := range w.ps {
			if ctx.Err() != nil {
				return deleted
			}
			deleted += p.retain(w.cfg, now)
		}
	}
	return deleted
}

// retain deletes the oldest sealed segments retention allows. budgetMu must
// be held.
func (p *Partition) retain(tc TopicConfig, now time.Time) int {
	p.mu.Lock()
	segs := append([]*segment(nil), p.segments[:len(p.segments)-1]...)
	p.mu.Unlock()
	protect := p.protectedFrom()
	remaining := p.bytes.Load()
	n := 0
	reason := ""
	for _, s := range segs {
		if s.end.Load() > protect {
			break
		}
		size := s.size.Load() + indexHeaderSize + s.idxEntries.Load()*indexEntrySize
		switch {
		case tc.RetentionBytes > 0 && remaining > tc.RetentionBytes:
			reason = "retention_bytes"
		case tc.RetentionAge > 0 && p.segmentMaxTs(s) < now.Add(-tc.RetentionAge).UnixNano():
			reason = "retention_age"
		default:
			reason = ""
		}
		if reason == "" {
			break
		}
		remaining -= size
		n++
		p.deleteOldest(1, reason)
	}
	return n
}

// protectedFrom returns the lowest offset retention must keep.
func (p *Partition) protectedFrom() int64 {
	if p.log.cfg.Protect == nil {
		return 1<<63 - 1
	}
	return p.log.cfg.Protect(p.topic, p.id)
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

// makeRoom deletes the node's oldest sealed segments, already-forwarded ones
// first, until need more bytes fit in the budget or nothing sealed is left.
func (l *Log) makeRoom(need int64, _ *Partition) {
	l.budgetMu.Lock()
	defer l.budgetMu.Unlock()
	for l.bytes.Load()+need > l.cfg.DiskBudgetBytes {
		var best *Partition
		bestTs, bestForwarded := int64(0), false
		for _, p := range l.allPartitions() {
			p.mu.Lock()
			if len(p.segments) < 2 {
				p.mu.Unlock()
				continue
			}
			s := p.segments[0]
			p.mu.Unlock()
			forwarded := s.end.Load() <= p.protectedFrom()
			ts := p.segmentMaxTs(s)
			if best == nil || forwarded && !bestForwarded || forwarded == bestForwarded && ts < bestTs {
				best, bestTs, bestForwarded = p, ts, forwarded
			}
		}
		if best == nil {
			return
		}
		reason := "budget"
		if !bestForwarded {
			reason = "budget_unforwarded"
			l.cfg.Logger.Warn("log: disk budget reached: deleting data that was not forwarded yet (policy delete-oldest)",
				"topic", best.topic, "partition", best.id)
		}
		best.deleteOldest(1, reason)
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
