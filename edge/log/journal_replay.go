package log

import (
	"errors"
	"fmt"
	"os"
)

// ErrJournalGap: the journal holds records past a partition's end that do
// not continue it: the segment lost records it had been fdatasynced with
// (a checkpoint covered them), which no power cut does.
var ErrJournalGap = errors.New("log: journal records do not continue the partition")

// journalScan is what one journal file holds: its newest pass's entries
// from the start of the file up to the first one that is damaged, missing
// or from an older pass.
type journalScan struct {
	path    string
	gen     uint64 // the pass; 0 for a file with no valid entry
	entries []journalEntry
	stop    int64 // where the pass's valid entries end
	size    int64
	// durableAfter is the position of a valid entry of the same pass after
	// stop whose commit was written after stop had been fdatasynced; -1
	// if none. Its existence means the damage at stop is to durable bytes.
	durableAfter int64
	torn         int // valid entries of the pass after stop (cut)
}

// scanJournal reads a journal file. The file's pass is the largest gen of
// any valid entry on a page boundary, where every commit starts: entries
// of older passes are stale bytes a truncate left for the disk to forget.
func scanJournal(jf *journalFile) (journalScan, error) {
	sc := journalScan{path: jf.path, durableAfter: -1}
	size, err := jf.f.Size()
	if err != nil {
		return sc, fmt.Errorf("log: stat journal %s: %w", jf.path, err)
	}
	if size > 1<<30 {
		return sc, fmt.Errorf("log: journal %s is %d bytes, more than any journal this build writes; move it away if the log's segments are known to be intact", jf.path, size)
	}
	data := make([]byte, size)
	if size > 0 {
		if _, err := readFull(jf.f, data, 0); err != nil {
			return sc, fmt.Errorf("log: read journal %s: %w", jf.path, err)
		}
	}
	sc.size = size
	for pos := int64(0); pos+journalFixedSize <= size; pos += journalPage {
		if e, _, err := parseJournalEntry(data[pos:]); err == nil && e.gen > sc.gen {
			sc.gen = e.gen
		}
	}
	if sc.gen == 0 {
		return sc, nil
	}
	pos := int64(0)
	for pos < size {
		e, n, err := parseJournalEntry(data[pos:])
		if err != nil || e.gen != sc.gen {
			break
		}
		if !e.pad {
			sc.entries = append(sc.entries, e)
		}
		pos += int64(n)
	}
	sc.stop = pos
	for q := (pos + journalPage - 1) / journalPage * journalPage; q+journalFixedSize <= size; q += journalPage {
		e, _, err := parseJournalEntry(data[q:])
		if err != nil || e.gen != sc.gen {
			continue
		}
		sc.torn++
		if e.durable > pos && sc.durableAfter < 0 {
			sc.durableAfter = q
		}
	}
	return sc, nil
}

// openJournal replays both journal files into the partitions Open
// recovered, oldest pass first, fdatasyncs what it restored, and starts
// the journal on a new pass (start), or removes the files (a log opened
// without the journal after one with it). Damage inside the newest pass followed by a
// commit written after the damaged bytes were synced is refused like
// damage to a durable segment frame; any other damage is a torn unsynced
// tail, cut. Records the segments already hold are skipped; a record past
// a partition's end that does not continue it is refused (ErrJournalGap).
func (l *Log) openJournal(start bool) error {
	files, err := openJournalFiles(l)
	if err != nil {
		return err
	}
	closeFiles := func() {
		for _, jf := range files {
			jf.f.Close()
		}
	}
	var scans [2]journalScan
	for i, jf := range files {
		if scans[i], err = scanJournal(jf); err != nil {
			closeFiles()
			return err
		}
	}
	old, newest := scans[0], scans[1]
	if old.gen > newest.gen {
		old, newest = newest, old
	}
	if newest.durableAfter >= 0 {
		ce := &CorruptionError{Segment: newest.path, Pos: newest.stop, Err: ErrChecksum}
		if l.cfg.Recovery != RecoveryTruncate {
			closeFiles()
			return ce
		}
		l.cfg.Logger.Warn("log: journal damaged in bytes that were synced; cutting it there as asked (Recovery=truncate)", "err", ce)
	}
	if newest.torn > 0 {
		l.cfg.Logger.Warn("log: journal tail torn by a power cut; its records were never acknowledged", "journal", newest.path, "pos", newest.stop, "entries_cut", newest.torn)
	}
	replayed := make(map[*Partition]bool)
	var n int
	for _, sc := range []journalScan{old, newest} {
		for _, e := range sc.entries {
			k, err := l.replayEntry(e, sc.path, replayed)
			if err != nil {
				closeFiles()
				return err
			}
			n += k
		}
	}
	for p := range replayed {
		p.roundMu.Lock()
		err := p.syncActive()
		p.roundMu.Unlock()
		if err != nil {
			closeFiles()
			return err
		}
	}
	if n > 0 {
		l.metrics.journalReplayed.Add(float64(n))
		l.cfg.Logger.Info("log: restored records from the journal", "records", n, "partitions", len(replayed))
	}
	if !start {
		closeFiles()
		return removeJournal(l.dir)
	}
	j, err := startJournal(l, files, newest.gen+1)
	if err != nil {
		closeFiles()
		return err
	}
	l.journal = j
	return nil
}

// replayEntry writes the frames of e that continue their partition and
// returns how many records it restored.
func (l *Log) replayEntry(e journalEntry, path string, replayed map[*Partition]bool) (int, error) {
	t := l.topics[e.topic]
	if t == nil || e.part < 0 || int(e.part) >= len(t.partitions) {
		return 0, fmt.Errorf("log: journal %s holds records of %s/%d, which is not on disk: restore the partition's directory, or move the journal files away to discard them", path, e.topic, e.part)
	}
	p := t.partitions[e.part]
	p.roundMu.Lock()
	defer p.roundMu.Unlock()
	n := 0
	for buf := e.frames; len(buf) > 0; {
		b, size, err := DecodeFrame(buf)
		if err != nil {
			return n, fmt.Errorf("log: journal %s: a frame of %s/%d does not decode: %w", path, e.topic, e.part, err)
		}
		buf = buf[size:]
		first, end := b.BaseOffset, b.BaseOffset+int64(len(b.Records))
		switch {
		case end <= p.nextOffset:
			continue
		case first != p.nextOffset:
			if l.cfg.Recovery == RecoveryTruncate {
				l.cfg.Logger.Warn("log: journal records do not continue the partition; dropped as asked (Recovery=truncate)", "partition", fmt.Sprintf("%s/%d", e.topic, e.part), "first", first, "end", p.nextOffset)
				continue
			}
			return n, fmt.Errorf("%w: %s holds %s/%d offsets %d..%d, the partition ends at %d (its segment lost fdatasynced records); `edge check` shows the damage", ErrJournalGap, path, e.topic, e.part, first, end-1, p.nextOffset)
		}
		req := &appendReq{recs: b.Records, count: len(b.Records), size: recordsSize(b.Records)}
		if err := p.writeRequests([]*appendReq{req}, nil); err != nil {
			return n, err
		}
		p.dirty = true
		s := p.active()
		s.size.Store(p.writePos)
		s.end.Store(p.nextOffset)
		s.maxTs.Store(s.maxTsBefore)
		p.end.Store(p.nextOffset)
		replayed[p] = true
		n += len(b.Records)
	}
	return n, nil
}

// journalExists reports whether dir has a journal file.
func journalExists(dir string) bool {
	for _, path := range journalPaths(dir) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
	}
	return false
}

// removeJournal deletes the journal files of a log opened without one,
// after Open replayed them.
func removeJournal(dir string) error {
	removed := false
	for _, path := range journalPaths(dir) {
		err := os.Remove(path)
		if err == nil {
			removed = true
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("log: remove journal %s: %w", path, err)
		}
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}
