package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// recover opens the partition's segments: sealed segments are trusted (their
// header and index are checked, their frames are not scanned: that is what
// Check is for); the active segment is scanned from its last index entry, and
// a torn tail is cut back to the last valid frame.
func (p *Partition) recover() error {
	cfg := &p.log.cfg
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return fmt.Errorf("log: read %s: %w", p.dir, err)
	}
	var bases []int64
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, tmpSuffix):
			// A crash between write and rename: the old file is intact.
			os.Remove(filepath.Join(p.dir, name))
		case strings.HasSuffix(name, logSuffix):
			b, err := strconv.ParseInt(strings.TrimSuffix(name, logSuffix), 10, 64)
			if err != nil || b < 0 || segmentName(b) != name {
				continue
			}
			bases = append(bases, b)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	if len(bases) == 0 {
		s, err := p.createSegment(0)
		if err != nil {
			return err
		}
		p.segments = []*segment{s}
		p.writePos = segmentHeaderSize
		p.durablePos = segmentHeaderSize
		return nil
	}
	for i, base := range bases {
		s := newSegment(p.dir, base, cfg.OpenFile)
		p.segments = append(p.segments, s)
		if i < len(bases)-1 {
			if err := p.openSealed(s, bases[i+1]); err != nil {
				var ce *CorruptionError
				if errors.As(err, &ce) && cfg.Recovery == RecoveryTruncate {
					return p.truncateFromSegment(bases[i:], err)
				}
				p.closeSegments()
				return err
			}
			continue
		}
		if err := p.openActive(s); err != nil {
			p.closeSegments()
			return err
		}
	}
	p.start.Store(p.segments[0].base)
	return nil
}

func (p *Partition) closeSegments() {
	for _, s := range p.segments {
		s.closeFiles()
	}
}

// openSealed checks a sealed segment's header and index. Its end is the next
// segment's base: segments are sealed only after a sync, so they are never
// torn.
func (p *Partition) openSealed(s *segment, end int64) error {
	f, err := s.logFile(0)
	if err != nil {
		return err
	}
	size, err := f.Size()
	if err != nil {
		return fmt.Errorf("log: stat %s: %w", s.logPath, err)
	}
	hdr := make([]byte, segmentHeaderSize)
	if _, err := readFull(f, hdr, 0); err != nil {
		return &CorruptionError{Segment: s.logPath, Pos: 0, Err: ErrShortFrame}
	}
	if err := checkSegmentHeader(hdr, s.base); err != nil {
		return &CorruptionError{Segment: s.logPath, Pos: 0, Err: err}
	}
	s.size.Store(size)
	s.end.Store(end)
	n, ok := p.loadIndex(s, size, end)
	if !ok {
		if _, err := p.rebuildIndex(s, size); err != nil {
			return err
		}
	} else {
		s.idxEntries.Store(n)
	}
	p.addBytes(size + indexHeaderSize + s.idxEntries.Load()*indexEntrySize)
	s.closeFiles() // reopened on demand; keeps open files bounded
	return nil
}

// loadIndex validates a segment's index: header, whole entries, entries
// increasing and inside the segment, and the last entry pointing at a frame
// that holds its offset. It returns the number of entries.
func (p *Partition) loadIndex(s *segment, logSize, end int64) (int64, bool) {
	f, err := s.openFile(s.idxPath, os.O_RDONLY, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil || size < indexHeaderSize || (size-indexHeaderSize)%indexEntrySize != 0 {
		return 0, false
	}
	buf := make([]byte, size)
	if _, err := readFull(f, buf, 0); err != nil {
		return 0, false
	}
	if string(buf[0:4]) != indexMagic || string(buf[0:indexHeaderSize]) != string(indexHeader()) {
		return 0, false
	}
	n := (size - indexHeaderSize) / indexEntrySize
	prev := indexEntry{relOffset: 0, pos: segmentHeaderSize, maxTsBefore: minTs}
	for i := int64(0); i < n; i++ {
		e := decodeIndexEntry(buf[indexHeaderSize+i*indexEntrySize:])
		// maxTsBefore is a running maximum: a smaller one is an entry a
		// power cut tore across a page boundary (entries are not
		// page-aligned), its timestamp half zeroed.
		if e.pos <= prev.pos || e.relOffset <= prev.relOffset && i > 0 || e.maxTsBefore < prev.maxTsBefore ||
			int64(e.pos) >= logSize || s.base+int64(e.relOffset) >= end && end >= 0 {
			return 0, false
		}
		prev = e
	}
	if n > 0 {
		lf, err := s.logFile(0)
		if err != nil {
			return 0, false
		}
		b, _, err := readFrameAt(lf, int64(prev.pos), logSize)
		if err != nil || b.BaseOffset != s.base+int64(prev.relOffset) {
			return 0, false
		}
	}
	return n, true
}

// rebuildIndex rewrites a segment's index from its frames (tmp, sync,
// rename). It returns the segment's end offset and largest timestamp. The
// segment must be readable to size; damage ends the rebuild there.
func (p *Partition) rebuildIndex(s *segment, size int64) (int64, error) {
	cfg := &p.log.cfg
	f, err := s.logFile(0)
	if err != nil {
		return 0, err
	}
	out := indexHeader()
	pos, lastIdx := int64(segmentHeaderSize), int64(segmentHeaderSize)
	next := s.base
	maxTs := int64(minTs)
	var entries int64
	for pos < size {
		b, n, err := readFrameAt(f, pos, size)
		if err != nil || b.BaseOffset != next {
			break
		}
		if pos-lastIdx >= cfg.IndexIntervalBytes {
			var e [indexEntrySize]byte
			indexEntry{relOffset: uint32(b.BaseOffset - s.base), pos: uint32(pos), maxTsBefore: maxTs}.encode(e[:])
			out = append(out, e[:]...)
			entries++
			lastIdx = pos
		}
		if b.MaxTimestamp > maxTs {
			maxTs = b.MaxTimestamp
		}
		next = b.BaseOffset + int64(len(b.Records))
		pos += int64(n)
	}
	if err := writeFileAtomic(s.idxPath, out); err != nil {
		return 0, fmt.Errorf("log: rebuild index %s: %w", s.idxPath, err)
	}
	s.idxEntries.Store(entries)
	s.maxTs.Store(maxTs)
	p.log.metrics.indexRebuilds.Inc()
	cfg.Logger.Info("log: rebuilt index from segment", "index", s.idxPath, "entries", entries)
	return next, nil
}

// readFrameAt reads and validates the frame at pos of a file readable up to
// limit. It returns the batch and the frame length.
func readFrameAt(f File, pos, limit int64) (*Batch, int, error) {
	if limit-pos < frameHeaderSize {
		return nil, 0, ErrShortFrame
	}
	var hdr [frameHeaderSize]byte
	if _, err := readFull(f, hdr[:], pos); err != nil {
		return nil, 0, ErrShortFrame
	}
	n, err := frameLen(hdr[:])
	if err != nil {
		return nil, 0, err
	}
	if pos+int64(n) > limit {
		return nil, 0, ErrShortFrame
	}
	buf := make([]byte, n)
	if _, err := readFull(f, buf, pos); err != nil {
		return nil, 0, ErrShortFrame
	}
	return DecodeFrame(buf)
}

// openActive opens the last segment for appending and scans it from its last
// valid index entry to find the end; a torn tail is cut.
func (p *Partition) openActive(s *segment) error {
	cfg := &p.log.cfg
	f, err := cfg.OpenFile(s.logPath, os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log: open segment: %w", err)
	}
	s.f = f
	size, err := f.Size()
	if err != nil {
		return fmt.Errorf("log: stat %s: %w", s.logPath, err)
	}
	hdr := make([]byte, segmentHeaderSize)
	_, herr := readFull(f, hdr, 0)
	if herr == nil {
		herr = checkSegmentHeader(hdr, s.base)
	}
	if herr != nil {
		// A crash right after creating the segment leaves a short or empty
		// header. Anything valid after it means real damage.
		if size > segmentHeaderSize && p.findValidFrame(f, segmentHeaderSize, size) >= 0 {
			if cfg.Recovery != RecoveryTruncate {
				return &CorruptionError{Segment: s.logPath, Pos: 0, Err: herr}
			}
		}
		p.reportCut(s, f, 0, size, herr)
		if err := f.Truncate(0); err != nil {
			return fmt.Errorf("log: truncate %s: %w", s.logPath, err)
		}
		if _, err := f.Write(encodeSegmentHeader(s.base)); err != nil {
			return fmt.Errorf("log: rewrite header %s: %w", s.logPath, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("log: sync %s: %w", s.logPath, err)
		}
		size = segmentHeaderSize
		os.Remove(s.idxPath)
	}

	// Find where to start scanning: the last index entry that is valid.
	start := indexEntry{relOffset: 0, pos: segmentHeaderSize, maxTsBefore: minTs}
	n, ok := p.loadIndex(s, size, -1)
	if ok && n > 0 {
		start, _ = s.lookupIndexFile(n)
	}
	if !ok {
		n = 0
	}

	// Scan frames from there.
	pos := int64(start.pos)
	next := s.base + int64(start.relOffset)
	maxTs := start.maxTsBefore
	cut := false
	for pos < size {
		b, fl, err := readFrameAt(f, pos, size)
		if err == nil && b.BaseOffset != next {
			err = fmt.Errorf("%w: frame at byte %d holds offset %d, expected %d", ErrBadOffset, pos, b.BaseOffset, next)
		}
		if err != nil {
			// Valid frames after the damage make it damage to durable data
			// only if one of them was written after an fdatasync that
			// covered pos; otherwise pos lies in a region no fdatasync ever
			// covered, which a power cut may tear anywhere, not only at its
			// end (FORMAT.md, "Torn unsynced regions").
			frames, durable := p.scanLater(f, pos+1, size)
			if frames > 0 && durable > pos && cfg.Recovery != RecoveryTruncate {
				return &CorruptionError{Segment: s.logPath, Pos: pos, Err: fmt.Errorf("%w (a valid frame after it records the segment durable up to byte %d)", err, durable)}
			}
			if frames > 0 && durable <= pos {
				p.log.metrics.tornUnsyncedFrames.Add(float64(frames))
				cfg.Logger.Warn("log: power cut tore the unsynced end of a segment; cutting it with the valid frames after the tear (never acknowledged under sync: always)",
					"topic", p.topic, "partition", p.id, "segment", s.logPath, "pos", pos, "valid_frames_cut", frames, "durable_up_to", durable)
			}
			p.reportCut(s, f, pos, size, err)
			if err := f.Truncate(pos); err != nil {
				return fmt.Errorf("log: truncate %s: %w", s.logPath, err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("log: sync %s after truncate: %w", s.logPath, err)
			}
			size = pos
			cut = true
			break
		}
		if b.MaxTimestamp > maxTs {
			maxTs = b.MaxTimestamp
		}
		next = b.BaseOffset + int64(len(b.Records))
		pos += int64(fl)
	}

	// Frames record the position every byte before them was durable at; so
	// the whole active segment must be durable now, whatever the previous
	// process's sync policy left in the page cache. A cut already synced.
	if !cut {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("log: sync %s at open: %w", s.logPath, err)
		}
	}

	// Index: keep the valid entries, or rebuild.
	if !ok {
		if _, err := p.rebuildIndex(s, size); err != nil {
			return err
		}
	} else {
		s.idxEntries.Store(n)
	}
	// Drop index entries at or past a cut.
	for s.idxEntries.Load() > 0 {
		e, err := s.entryAt(s.idxEntries.Load() - 1)
		if err == nil && int64(e.pos) < size {
			break
		}
		s.idxEntries.Add(-1)
	}
	idx, err := cfg.OpenFile(s.idxPath, os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log: open index: %w", err)
	}
	if err := idx.Truncate(indexHeaderSize + s.idxEntries.Load()*indexEntrySize); err != nil {
		idx.Close()
		return fmt.Errorf("log: truncate index %s: %w", s.idxPath, err)
	}
	// Synced, so that entries cut here cannot come back after a power cut
	// in pages that new entries have not reached yet.
	if err := idx.Sync(); err != nil {
		idx.Close()
		return fmt.Errorf("log: sync index %s: %w", s.idxPath, err)
	}
	s.fmu.Lock()
	if s.idx != nil {
		s.idx.Close()
	}
	s.idx = idx
	s.fmu.Unlock()
	lastIdx := int64(segmentHeaderSize)
	if c := s.idxEntries.Load(); c > 0 {
		e, err := s.entryAt(c - 1)
		if err == nil {
			lastIdx = int64(e.pos)
		}
	}
	s.lastIdxPos = lastIdx
	s.maxTsBefore = maxTs
	s.maxTs.Store(maxTs)
	s.size.Store(size)
	s.end.Store(next)
	p.nextOffset = next
	p.writePos = size
	p.durablePos = size
	p.end.Store(next)
	p.addBytes(size + indexHeaderSize + s.idxEntries.Load()*indexEntrySize)
	return nil
}

func (s *segment) lookupIndexFile(n int64) (indexEntry, error) {
	return s.entryAt(n - 1)
}

func (s *segment) entryAt(i int64) (indexEntry, error) {
	f, err := s.openFile(s.idxPath, os.O_RDONLY, 0)
	if err != nil {
		return indexEntry{}, err
	}
	defer f.Close()
	var b [indexEntrySize]byte
	if _, err := readFull(f, b[:], indexHeaderSize+i*indexEntrySize); err != nil {
		return indexEntry{}, err
	}
	return decodeIndexEntry(b[:]), nil
}

// findValidFrame looks for any frame that validates at or after from. It
// returns its position or -1. This is what tells a torn tail (nothing valid
// after the damage) from damage in the middle.
func (p *Partition) findValidFrame(f File, from, size int64) int64 {
	pos, _ := nextValidFrame(f, from, size)
	return pos
}

// scanLater counts the frames that validate at or after from and returns
// the largest durable position they record (durableUnknown for an OPB1
// frame, which proves nothing either way and so counts as durable).
func (p *Partition) scanLater(f File, from, size int64) (frames int, durable int64) {
	for from < size {
		pos, n := nextValidFrame(f, from, size)
		if pos < 0 {
			break
		}
		frames++
		buf := make([]byte, n)
		if _, err := readFull(f, buf, pos); err == nil {
			if _, _, d, err := decodeFrame(buf); err == nil && d > durable {
				durable = d
			}
		}
		from = pos + int64(n)
	}
	return frames, durable
}

// nextValidFrame returns the position and length of the first frame that
// validates at or after from, or -1.
func nextValidFrame(f File, from, size int64) (int64, int) {
	const chunk = 1 << 20
	buf := make([]byte, chunk+frameHeaderSize)
	for off := from; off < size; off += chunk {
		n, _ := f.ReadAt(buf, off)
		for i := 0; i+4 <= n; i++ {
			if buf[i] != 0x4F || buf[i+1] != 0x50 || buf[i+2] != 0x42 || (buf[i+3] != 0x31 && buf[i+3] != 0x32) {
				continue
			}
			if _, fl, err := readFrameAt(f, off+int64(i), size); err == nil {
				return off + int64(i), fl
			}
		}
	}
	return -1, 0
}

// reportCut logs and counts bytes cut from a segment, and keeps up to
// MaxBrokenBytes of them beside it as evidence.
func (p *Partition) reportCut(s *segment, f File, pos, size int64, why error) {
	cfg := &p.log.cfg
	dropped := size - pos
	p.log.metrics.tornBytes.Add(float64(dropped))
	p.log.metrics.tornTails.Inc()
	keep := min(dropped, cfg.MaxBrokenBytes)
	broken := fmt.Sprintf("%s.%d%s", s.logPath, pos, brokenSuffix)
	if keep > 0 {
		buf := make([]byte, keep)
		n, _ := f.ReadAt(buf, pos)
		if err := writeFileAtomic(broken, buf[:n]); err != nil {
			cfg.Logger.Warn("log: could not keep cut bytes", "file", broken, "err", err)
		}
	}
	cfg.Logger.Warn("log: cut damaged tail of segment",
		"topic", p.topic, "partition", p.id, "segment", s.logPath, "pos", pos,
		"dropped_bytes", dropped, "kept_as", broken, "reason", why)
}

// truncateFromSegment handles RecoveryTruncate when a sealed segment is
// damaged: it and every later segment (bases, from the damaged one on) are
// set aside as .broken, so the partition ends where the damage starts and no
// offset gap can appear.
func (p *Partition) truncateFromSegment(bases []int64, why error) error {
	cfg := &p.log.cfg
	p.closeSegments()
	for _, base := range bases {
		s := newSegment(p.dir, base, cfg.OpenFile)
		cfg.Logger.Warn("log: setting aside damaged segment and all after it (recovery=truncate)", "segment", s.logPath, "reason", why)
		if err := os.Rename(s.logPath, s.logPath+brokenSuffix); err != nil {
			return fmt.Errorf("log: set aside %s: %w", s.logPath, err)
		}
		os.Remove(s.idxPath)
	}
	if err := syncDir(p.dir); err != nil {
		return err
	}
	p.log.metrics.tornTails.Inc()
	p.segments = nil
	p.addBytes(-p.bytes.Load())
	return p.recoverAgain(bases[0])
}

// recoverAgain reruns recovery after segments were set aside; if none are
// left, the partition restarts at base.
func (p *Partition) recoverAgain(base int64) error {
	entries, _ := os.ReadDir(p.dir)
	left := false
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), logSuffix) {
			left = true
		}
	}
	if !left {
		s, err := p.createSegment(base)
		if err != nil {
			return err
		}
		p.segments = []*segment{s}
		p.writePos = segmentHeaderSize
		p.durablePos = segmentHeaderSize
		p.nextOffset = base
		p.end.Store(base)
		p.start.Store(base)
		return nil
	}
	return p.recover()
}
