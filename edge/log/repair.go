package log

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Cut is one change Repair made to a partition: it now ends at Offset,
// where the damage began.
type Cut struct {
	Topic     string
	Partition int32
	Segment   string // the damaged segment file
	Pos       int64  // byte position in Segment the partition was cut at
	Offset    int64  // the partition's end offset after the cut
	Reason    string
}

// RepairReport says what Repair changed.
type RepairReport struct {
	// Cuts made at damage that Open does not look for (inside sealed
	// segments; Check finds it).
	Cuts []Cut
	// Evidence lists every file set aside or written as evidence during the
	// repair (".broken"), including those of cuts Open made itself (torn
	// tails, damaged headers).
	Evidence []string
}

// maxRepairRounds bounds Repair's open/check/cut loop; each round removes
// at least the first damage of every damaged partition.
const maxRepairRounds = 16

// Repair makes the log at dir sound, losing only what is damaged and what
// follows it: it opens the log with RecoveryTruncate (which cuts damage that
// Open finds), reads every frame (Check), and cuts every partition at its
// first damaged frame: the rest of that segment is kept as a .broken file
// (up to MaxBrokenBytes) and every later segment is set aside whole, so no
// offset gap can appear. It repeats until Check finds nothing. The log must
// not be open anywhere else (ErrLocked). Records past a cut are gone from
// the log; a forwarder's or reader's cursor beyond the new end is clamped
// by the node at its next start.
func Repair(ctx context.Context, dir string, cfg Config) (RepairReport, error) {
	var rep RepairReport
	before, err := brokenFiles(dir)
	if err != nil {
		return rep, err
	}
	cfg.Recovery = RecoveryTruncate
	for round := 0; ; round++ {
		l, err := Open(dir, cfg)
		if err != nil {
			return rep, err
		}
		for i := range rep.Cuts {
			if c := &rep.Cuts[i]; c.Offset < 0 {
				if p, err := l.Partition(c.Topic, c.Partition); err == nil {
					c.Offset = p.EndOffset()
				}
			}
		}
		var cuts []*CorruptionError
		var other []error
		for _, e := range l.Check(ctx) {
			var ce *CorruptionError
			if errors.As(e, &ce) {
				cuts = append(cuts, ce)
			} else {
				other = append(other, e)
			}
		}
		if err := l.Close(); err != nil {
			return rep, err
		}
		if len(other) > 0 {
			return rep, fmt.Errorf("log: repair: %w", errors.Join(other...))
		}
		if len(cuts) == 0 {
			break
		}
		if round == maxRepairRounds {
			return rep, fmt.Errorf("log: repair: still damaged after %d rounds: %w", round, cuts[0])
		}
		cfg.fill()
		for _, ce := range firstPerPartition(cuts) {
			c, err := cutAt(ce, cfg.MaxBrokenBytes)
			if err != nil {
				return rep, err
			}
			rep.Cuts = append(rep.Cuts, c)
			cfg.Logger.Warn("log: repair cut a partition at damage", "topic", c.Topic, "partition", c.Partition,
				"segment", c.Segment, "pos", c.Pos, "reason", c.Reason)
		}
	}
	after, err := brokenFiles(dir)
	if err != nil {
		return rep, err
	}
	for f := range after {
		if _, ok := before[f]; !ok {
			rep.Evidence = append(rep.Evidence, f)
		}
	}
	sort.Strings(rep.Evidence)
	return rep, nil
}

// firstPerPartition keeps, per partition directory, the damage in the
// lowest segment at the lowest position: cutting there drops the rest.
func firstPerPartition(errs []*CorruptionError) []*CorruptionError {
	first := map[string]*CorruptionError{}
	for _, ce := range errs {
		d := filepath.Dir(ce.Segment)
		if f, ok := first[d]; !ok || ce.Segment < f.Segment || ce.Segment == f.Segment && ce.Pos < f.Pos {
			first[d] = ce
		}
	}
	out := make([]*CorruptionError, 0, len(first))
	for _, ce := range first {
		out = append(out, ce)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Segment < out[j].Segment })
	return out
}

// cutAt ends a closed partition at ce: the damaged segment is truncated at
// ce.Pos (its cut bytes kept as evidence), later segments are renamed
// .broken, and stale indexes are removed (Open rebuilds them).
func cutAt(ce *CorruptionError, maxEvidence int64) (Cut, error) {
	dir := filepath.Dir(ce.Segment)
	name := filepath.Base(ce.Segment)
	base, err := strconv.ParseInt(strings.TrimSuffix(name, logSuffix), 10, 64)
	if err != nil || segmentName(base) != name {
		return Cut{}, fmt.Errorf("log: repair: %s is not a segment file", ce.Segment)
	}
	part, err := strconv.ParseInt(filepath.Base(dir), 10, 32)
	if err != nil {
		return Cut{}, fmt.Errorf("log: repair: %s is not in a partition directory", ce.Segment)
	}
	c := Cut{Topic: filepath.Base(filepath.Dir(dir)), Partition: int32(part), Segment: ce.Segment, Pos: ce.Pos, Reason: ce.Err.Error()}

	f, err := os.OpenFile(ce.Segment, os.O_RDWR, 0)
	if err != nil {
		return c, fmt.Errorf("log: repair: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return c, fmt.Errorf("log: repair: %w", err)
	}
	pos := max(ce.Pos, 0)
	if keep := min(st.Size()-pos, maxEvidence); keep > 0 {
		buf := make([]byte, keep)
		n, _ := f.ReadAt(buf, pos)
		if err := writeFileAtomic(fmt.Sprintf("%s.%d%s", ce.Segment, pos, brokenSuffix), buf[:n]); err != nil {
			return c, fmt.Errorf("log: repair: keep evidence: %w", err)
		}
	}
	if pos < segmentHeaderSize {
		// The header itself is damaged: keep the segment (its base offset is
		// the partition's end now), empty, with a sound header.
		pos = 0
	}
	if err := f.Truncate(pos); err != nil {
		return c, fmt.Errorf("log: repair: truncate %s: %w", ce.Segment, err)
	}
	if pos == 0 {
		if _, err := f.WriteAt(encodeSegmentHeader(base), 0); err != nil {
			return c, fmt.Errorf("log: repair: rewrite header of %s: %w", ce.Segment, err)
		}
	}
	if err := f.Sync(); err != nil {
		return c, fmt.Errorf("log: repair: sync %s: %w", ce.Segment, err)
	}
	os.Remove(strings.TrimSuffix(ce.Segment, logSuffix) + indexSuffix)

	entries, err := os.ReadDir(dir)
	if err != nil {
		return c, fmt.Errorf("log: repair: %w", err)
	}
	for _, e := range entries {
		b, err := strconv.ParseInt(strings.TrimSuffix(e.Name(), logSuffix), 10, 64)
		if err != nil || !strings.HasSuffix(e.Name(), logSuffix) || segmentName(b) != e.Name() || b <= base {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Rename(p, p+brokenSuffix); err != nil {
			return c, fmt.Errorf("log: repair: set aside %s: %w", p, err)
		}
		os.Remove(strings.TrimSuffix(p, logSuffix) + indexSuffix)
	}
	if err := syncDir(dir); err != nil {
		return c, err
	}
	c.Offset = -1 // known once reopened: Repair fills it in
	return c, nil
}

// brokenFiles lists the .broken files under dir.
func brokenFiles(dir string) (map[string]struct{}, error) {
	out := map[string]struct{}{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, brokenSuffix) {
			out[path] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("log: repair: list %s: %w", dir, err)
	}
	return out, nil
}
