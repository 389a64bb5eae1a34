package log

import (
	"context"
	"errors"
	"fmt"
)

// readChunk is how much one pread fetches when scanning frames: large enough
// to amortise the system call, small enough to keep a reader's memory fixed.
const readChunk = 64 << 10

// maxReadChunk caps one read-ahead buffer, whatever maxBytes asks for.
const maxReadChunk = 4 << 20

// Read returns records from offset from on, up to about maxBytes of encoded
// records but always at least one record if any is readable. It returns an
// empty slice at the end of the partition, and ErrOffsetOutOfRange below the
// start or beyond the end. Under SyncAlways it returns only durable records.
// It reads with pread and never blocks on appends; use Notify to wait.
// The records' byte slices share read buffers of about 64 KiB: they are
// never overwritten, but a record kept long keeps its buffer alive, so copy
// what you keep.
func (p *Partition) Read(ctx context.Context, from int64, maxBytes int) ([]Record, error) {
	var recs []Record
	err := p.read(ctx, from, func(s *segment, end int64) error {
		var err error
		recs, err = p.readSegment(s, from, end, maxBytes)
		return err
	})
	return recs, err
}

// read checks from and calls fn with the segment holding it (a reference
// held) and the end readers may see; not at all when from is that end.
func (p *Partition) read(ctx context.Context, from int64, fn func(s *segment, end int64) error) error {
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.isClosed() {
			return ErrClosed
		}
		end := p.end.Load()
		start := p.start.Load()
		if from < start || from > end {
			return fmt.Errorf("%w: %s/%d offset %d, readable [%d, %d)", ErrOffsetOutOfRange, p.topic, p.id, from, start, end)
		}
		if from == end {
			return nil
		}
		s := p.segmentFor(from)
		if s == nil {
			if p.isClosed() {
				return ErrClosed
			}
			if attempt < 3 {
				continue // deleted by retention meanwhile: recheck the range
			}
			return fmt.Errorf("%w: %s/%d offset %d", ErrOffsetOutOfRange, p.topic, p.id, from)
		}
		wasOpen := s.isOpen()
		err := fn(s, end)
		s.release()
		if !wasOpen {
			// Only a read that opened a sealed file can push the partition
			// over OpenSealedMax; the common read keeps its file and skips
			// the walk over every segment.
			p.trimOpen()
		}
		return err
	}
}

// Notify returns a channel that is closed once a record at offset is
// readable (EndOffset() > offset) or the partition closes; if either is
// already so, the channel is closed when returned. A reader selects on it
// beside its own shutdown and timers, so waiting costs no goroutine:
//
//	for {
//		recs, err := p.Read(ctx, next, maxBytes) // ErrClosed once closed
//		...
//		select {
//		case <-p.Notify(next):
//		case <-timer.C:
//		case <-ctx.Done():
//		}
//	}
//
// The channel is the one the committer closes and replaces at every commit
// that moves the end (liftbridge NotifyLEO, nats-server kickFlusher): any
// number of readers share it, and a wake-up may find more than one new
// record. Under SyncAlways it is closed only once the records are durable.
// Call Notify again after each wake-up: a channel is closed once, for one
// commit.
func (p *Partition) Notify(offset int64) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	// end is stored under mu before notify is closed and replaced
	// (publish), so a reader cannot read an old end and then take a
	// channel that was already replaced: it would miss the commit.
	if p.closed || p.end.Load() > offset {
		return p.ready
	}
	return p.notify
}

func (p *Partition) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// segmentFor returns the segment holding offset, with a reference taken.
func (p *Partition) segmentFor(offset int64) *segment {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := len(p.segments) - 1
	for i > 0 && p.segments[i].base > offset {
		i--
	}
	s := p.segments[i]
	if s.base > offset || !s.acquire() {
		return nil
	}
	return s
}

// scanFrom starts a read of s at the last indexed frame at or before
// from: the file, that frame's position, the segment's size and a
// read-ahead buffer for about maxBytes.
func (p *Partition) scanFrom(s *segment, from int64, maxBytes int) (f File, pos, limit int64, rb readBuf, err error) {
	if f, err = s.logFile(p.useTick.Add(1)); err != nil {
		return nil, 0, 0, rb, err
	}
	e, err := s.lookupIndex(s.idxEntries.Load(), func(e indexEntry) bool { return s.base+int64(e.relOffset) <= from })
	if err != nil {
		return nil, 0, 0, rb, err
	}
	// One pread covers the whole request in the common case; the buffer is
	// bounded by maxBytes (plus one index interval of skipped records).
	rb.chunk = min(max(int64(maxBytes)+p.log.cfg.IndexIntervalBytes, readChunk), maxReadChunk)
	return f, int64(e.pos), s.size.Load(), rb, nil
}

func (p *Partition) readSegment(s *segment, from, end int64, maxBytes int) ([]Record, error) {
	f, pos, limit, rb, err := p.scanFrom(s, from, maxBytes)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, min(max(maxBytes/128, 16), 8192))
	var bytes int
	for pos < limit {
		b, n, err := p.frameAt(f, s, pos, limit, &rb)
		if err != nil {
			return out, err
		}
		for i := range b.Records {
			r := b.Records[i]
			if r.Offset < from {
				continue
			}
			if r.Offset >= end || (len(out) > 0 && bytes+r.Msgsize() > maxBytes) {
				return out, nil
			}
			bytes += r.Msgsize()
			out = append(out, r)
		}
		pos += int64(n)
		if bytes >= maxBytes {
			break
		}
	}
	return out, nil
}

// readBuf holds bytes of a segment read ahead from pos.
type readBuf struct {
	data  []byte
	pos   int64
	chunk int64 // read-ahead size; 0 means readChunk
}

func (rb *readBuf) holds(pos int64, n int) bool {
	return pos >= rb.pos && pos+int64(n) <= rb.pos+int64(len(rb.data))
}

// frameAt returns the frame at pos, reading ahead into rb so that a run of
// small frames costs one pread per chunk.
func (p *Partition) frameAt(f File, s *segment, pos, limit int64, rb *readBuf) (*Batch, int, error) {
	frame, err := p.frameBytesAt(f, s, pos, limit, rb)
	if err != nil {
		return nil, 0, err
	}
	batch, _, err := DecodeFrame(frame)
	if err != nil {
		return nil, 0, p.readErr(s, pos, err)
	}
	return batch, len(frame), nil
}

// frameBytesAt returns the bytes of the frame at pos, not yet checked
// beyond its header.
func (p *Partition) frameBytesAt(f File, s *segment, pos, limit int64, rb *readBuf) ([]byte, error) {
	chunk := rb.chunk
	if chunk == 0 {
		chunk = readChunk
	}
	if !rb.holds(pos, frameHeaderSize) {
		if err := rb.fill(f, pos, min(limit-pos, chunk)); err != nil {
			return nil, p.readErr(s, pos, err)
		}
	}
	off := int(pos - rb.pos)
	n, err := frameLen(rb.data[off:])
	if err != nil {
		return nil, p.readErr(s, pos, err)
	}
	if pos+int64(n) > limit {
		return nil, p.readErr(s, pos, ErrShortFrame)
	}
	if !rb.holds(pos, n) {
		if err := rb.fill(f, pos, min(limit-pos, max(int64(n), chunk))); err != nil {
			return nil, p.readErr(s, pos, err)
		}
		off = 0
	}
	return rb.data[off : off+n], nil
}

// fill reads n bytes at pos into a new buffer: records returned from the
// old one alias it, so it is never overwritten.
func (rb *readBuf) fill(f File, pos, n int64) error {
	rb.data = make([]byte, n)
	rb.pos = pos
	if _, err := readFull(f, rb.data, pos); err != nil {
		rb.data = rb.data[:0]
		return ErrShortFrame
	}
	return nil
}

func (p *Partition) readErr(s *segment, pos int64, err error) error {
	var ce *CorruptionError
	if errors.As(err, &ce) {
		return err
	}
	p.log.metrics.readErrors.Inc()
	return &CorruptionError{Segment: s.logPath, Pos: pos, Err: err}
}

// OffsetForTime returns the first offset whose record timestamp is at or
// after ts (Unix nanoseconds), or the end offset if there is none. Device
// clocks need not be monotonic: the answer is the first such record in log
// order.
func (p *Partition) OffsetForTime(ctx context.Context, ts int64) (int64, error) {
	p.mu.Lock()
	segs := make([]*segment, 0, len(p.segments))
	for _, s := range p.segments {
		if s.acquire() {
			segs = append(segs, s)
		}
	}
	p.mu.Unlock()
	defer func() {
		for _, s := range segs {
			s.release()
		}
	}()
	end := p.end.Load()
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return -1, err
		}
		if mt := s.maxTs.Load(); mt != minTs && mt < ts && s.end.Load() <= end && s != segs[len(segs)-1] {
			continue
		}
		e, err := s.lookupIndex(s.idxEntries.Load(), func(e indexEntry) bool { return e.maxTsBefore < ts })
		if err != nil {
			return -1, err
		}
		f, err := s.logFile(p.useTick.Add(1))
		if err != nil {
			return -1, err
		}
		limit := s.size.Load()
		var rb readBuf
		for pos := int64(e.pos); pos < limit; {
			b, n, err := p.frameAt(f, s, pos, limit, &rb)
			if err != nil {
				return -1, err
			}
			if b.MaxTimestamp >= ts {
				for _, r := range b.Records {
					if r.Timestamp >= ts && r.Offset < end {
						return r.Offset, nil
					}
				}
			}
			pos += int64(n)
		}
	}
	return end, nil
}

// Check reads every frame of every segment and returns what is damaged:
// *CorruptionError values naming file and byte position, and offset gaps.
// It is the full verification that Open skips for sealed segments.
func (l *Log) Check(ctx context.Context) []error {
	var errs []error
	for _, p := range l.allPartitions() {
		errs = append(errs, p.check(ctx)...)
	}
	return errs
}

func (p *Partition) check(ctx context.Context) []error {
	p.mu.Lock()
	segs := make([]*segment, 0, len(p.segments))
	for _, s := range p.segments {
		if s.acquire() {
			segs = append(segs, s)
		}
	}
	p.mu.Unlock()
	defer func() {
		for _, s := range segs {
			s.release()
		}
	}()
	var errs []error
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return append(errs, err)
		}
		f, err := s.logFile(p.useTick.Add(1))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		limit := s.size.Load()
		next := s.base
		var rb readBuf
		pos := int64(segmentHeaderSize)
		for pos < limit {
			b, n, err := p.frameAt(f, s, pos, limit, &rb)
			if err == nil && b.BaseOffset != next {
				err = &CorruptionError{Segment: s.logPath, Pos: pos, Err: fmt.Errorf("%w: holds %d, expected %d", ErrBadOffset, b.BaseOffset, next)}
			}
			if err != nil {
				errs = append(errs, err)
				break
			}
			next = b.BaseOffset + int64(len(b.Records))
			pos += int64(n)
		}
		if pos >= limit && next != s.end.Load() {
			errs = append(errs, &CorruptionError{Segment: s.logPath, Pos: pos, Err: fmt.Errorf("%w: segment ends at offset %d, next segment starts at %d", ErrBadOffset, next, s.end.Load())})
		}
	}
	p.trimOpen()
	return errs
}
