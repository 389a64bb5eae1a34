package log

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxPendingBytes bounds the bytes queued for one partition's next commit;
// AppendAsync blocks beyond it, which is the back-pressure that keeps memory
// bounded when the disk is slower than the clients.
const maxPendingBytes = 16 << 20

// retainBufBytes is the largest commit buffer a partition keeps between
// rounds. A round of many appends is written in frames of at most this
// size, one write each, so that it reuses the buffer: growing a buffer to
// a whole round's size (megabytes under load) and dropping it again cost
// more CPU than the encoding itself. Only an append bigger than this gets
// a buffer of its own.
const retainBufBytes = 256 << 10

// Partition is one ordered sequence of records. It is safe for concurrent
// use: any number of appenders and readers.
type Partition struct {
	log   *Log
	topic string
	id    int32
	dir   string

	mu            sync.Mutex
	segments      []*segment    // mu; sorted by base, last is active
	pending       []*appendReq  // mu
	pendingBytes  int           // mu
	pendingRecs   int           // mu
	spaceFreed    chan struct{} // mu; closed when pending is taken
	notify        chan struct{} // mu; closed and replaced when end moves, and at close
	syncRequested bool          // mu
	closed        bool          // mu; appends are refused
	stopped       bool          // mu; close ran
	failed        error         // mu; sticky
	jReady        bool          // journal.mu; on the journal's ready list

	// holds is copy-on-write: replaced under mu, read without it.
	holds atomic.Pointer[[]*Hold]

	failedFlag atomic.Bool
	start      atomic.Int64 // first readable offset
	end        atomic.Int64 // next offset to be written, as visible to readers
	bytes      atomic.Int64 // bytes of every .log and .idx
	useTick    atomic.Int64

	ready chan struct{} // closed at open: what Notify returns when there is no need to wait
	wake  chan struct{} // work is pending for the committer
	stop  chan struct{} // closed by close
	done  chan struct{} // closed when the committer goroutine exits

	// roundMu makes the holder the partition's only writer. Committer-owned
	// state below is guarded by it.
	roundMu    sync.Mutex
	inFlight   int           // records of the previous round plus those queued behind it
	fsyncEWMA  time.Duration // smoothed fdatasync latency
	nextOffset int64
	writePos   int64 // bytes written to the active segment
	// durablePos is the active segment's position up to which every byte
	// has been fdatasynced; each frame records it (FORMAT.md, "Torn
	// unsynced regions").
	durablePos int64
	dirty      bool // written but not synced
	buf        []byte
}

type appendReq struct {
	recs  []Record
	raw   []RawBatch // AppendBatchesAt: stored as they are, one frame each; recs is nil
	count int        // records
	size  int
	first int64
	done  func(first int64, err error)
}

func openPartition(l *Log, topicName string, id int32) (*Partition, error) {
	dir := filepath.Join(l.dir, topicName, strconv.Itoa(int(id)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log: create partition dir: %w", err)
	}
	p := &Partition{
		log:        l,
		topic:      topicName,
		id:         id,
		dir:        dir,
		spaceFreed: make(chan struct{}),
		notify:     make(chan struct{}),
		ready:      make(chan struct{}),
		wake:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	close(p.ready)
	p.mu.Lock()
	for _, name := range l.cfg.Holders {
		p.holdLocked(name)
	}
	p.mu.Unlock()
	if err := p.recover(); err != nil {
		p.addBytes(-p.bytes.Load())
		return nil, fmt.Errorf("log: open %s/%d: %w", topicName, id, err)
	}
	go p.committer()
	return p, nil
}

// Topic returns the partition's topic name.
func (p *Partition) Topic() string { return p.topic }

// ID returns the partition number.
func (p *Partition) ID() int32 { return p.id }

// StartOffset returns the first readable offset (records below it were
// deleted by retention).
func (p *Partition) StartOffset() int64 { return p.start.Load() }

// EndOffset returns the next offset to be written: the log end offset as
// readers see it. Under SyncAlways every offset below it is durable.
func (p *Partition) EndOffset() int64 { return p.end.Load() }

// Bytes returns the size of the partition's segments and indexes.
func (p *Partition) Bytes() int64 { return p.bytes.Load() }

// Failed returns the sticky failure, or nil.
func (p *Partition) Failed() error {
	if !p.failedFlag.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Info describes the partition now.
func (p *Partition) Info() PartitionInfo {
	p.mu.Lock()
	n := len(p.segments)
	p.mu.Unlock()
	return PartitionInfo{Partition: p.id, StartOffset: p.StartOffset(), EndOffset: p.EndOffset(), Bytes: p.Bytes(), Segments: n}
}

func recordsSize(recs []Record) int {
	n := 16
	for i := range recs {
		n += recs[i].Msgsize()
	}
	return n
}

// Append appends records and returns the offset of the first. Under
// SyncAlways it returns after the records are durable. If ctx ends first,
// Append returns ctx.Err() and the records may or may not be appended later:
// like a lost network reply, the caller cannot know.
func (p *Partition) Append(ctx context.Context, recs []Record) (int64, error) {
	type result struct {
		first int64
		err   error
	}
	ch := make(chan result, 1)
	if err := p.AppendAsync(ctx, recs, func(first int64, err error) { ch <- result{first, err} }); err != nil {
		return -1, err
	}
	select {
	case r := <-ch:
		return r.first, r.err
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// AppendAsync queues records for the next group commit. If it returns nil,
// done is called exactly once, from the committer goroutine, when the records
// are durable under the sync policy (err nil) or have failed; calls for one
// partition come in the order of the AppendAsync calls. done must not block.
// AppendAsync blocks while the partition's queue is full, until ctx ends.
func (p *Partition) AppendAsync(ctx context.Context, recs []Record, done func(first int64, err error)) error {
	if len(recs) == 0 {
		return ErrEmptyBatch
	}
	size := recordsSize(recs)
	if size+frameHeaderSize > p.log.cfg.MaxBatchBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBatchTooLarge, size, p.log.cfg.MaxBatchBytes)
	}
	return p.enqueue(ctx, &appendReq{recs: recs, count: len(recs), size: size, done: done})
}

// enqueue queues req for the next commit, waiting while the queue is full.
func (p *Partition) enqueue(ctx context.Context, req *appendReq) error {
	size := req.size
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return ErrClosed
		}
		if p.failed != nil {
			err := p.failed
			p.mu.Unlock()
			return err
		}
		if p.pendingBytes == 0 || p.pendingBytes+size <= maxPendingBytes {
			break
		}
		ch := p.spaceFreed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
	}
	p.pending = append(p.pending, req)
	p.pendingBytes += size
	p.pendingRecs += req.count
	p.mu.Unlock()
	if j := p.log.journal; j != nil {
		j.queued(p, req.count, size) // the journal's committer writes every partition
		return nil
	}
	p.kick()
	return nil
}

func (p *Partition) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// committer is the partition's single writer: appends that arrive while
// one fdatasync runs share the next one. One committer per partition, not
// one per log: separate files need separate fdatasyncs either way, so a
// log-wide committer saves none and makes every partition wait for the
// slowest (measured; FORMAT.md, "Group commit").
func (p *Partition) committer() {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		case <-p.wake:
		}
		p.gather()
		p.roundMu.Lock()
		r := p.prepare(nil, 0)
		p.syncRound(r)
		p.publish(r)
		p.roundMu.Unlock()
	}
}

// gather delays a round briefly under concurrent load, so that a round
// does not start with the first arrival and leave the rest to the next
// fdatasync. A pipelining client with 100 messages in flight otherwise
// settles into two rounds of 50 per window: each fdatasync carries half of
// what it could. The committer waits until as many records are queued as
// were in flight at the end of the previous round (that round's plus those
// queued behind it) — usually one client round trip — or at most a quarter
// of the measured fdatasync latency, capped by Config.CommitDelayMax. A lone
// appender (rounds of one record) never waits. Only the committer goroutine
// calls it.
func (p *Partition) gather() {
	maxDelay := p.log.cfg.CommitDelayMax
	target := p.inFlight
	if maxDelay <= 0 || target < commitDelayMinRecords || p.log.cfg.Sync != SyncAlways || p.log.journal != nil {
		return // the journal's commit window gathers instead
	}
	d := min(p.fsyncEWMA/4, maxDelay)
	if d <= 0 {
		return
	}
	var timer *time.Timer
	for {
		p.mu.Lock()
		n := p.pendingRecs
		full := p.pendingBytes >= p.log.cfg.MaxBatchBytes
		p.mu.Unlock()
		if n >= target || full {
			return
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		}
		select {
		case <-p.wake:
		case <-timer.C:
			return
		case <-p.stop:
			return
		}
	}
}

// commitDelayMinRecords is the previous round's size from which gather
// waits: below it the load is a few sequential appenders, whose latency
// matters more than the fdatasyncs saved.
const commitDelayMinRecords = 4

// round is one commit: what prepare wrote and what publish will release.
type round struct {
	reqs    []*appendReq
	end     int64
	pos     int64
	needs   bool // needs an fdatasync before publish
	err     error
	written bool
	left    int      // records left queued (a journal commit's byte limit)
	seg     *segment // the active segment when the round was written
}

// prepare takes the pending appends, assigns offsets, writes their frames to
// the active segment (rolling as needed) and returns what must be synced.
// With a journal j (its committer calling), the frames also go to j's
// commit, and prepare takes appends of at most limit bytes, or one if j
// has nothing yet. roundMu must be held.
func (p *Partition) prepare(j *journal, limit int) *round {
	p.mu.Lock()
	reqs := p.pending
	if j != nil {
		n, size := 0, 0
		for n < len(reqs) && (size+reqs[n].size <= limit || len(j.buf) == 0 && n == 0) {
			size += reqs[n].size
			n++
		}
		p.pending = nil
		if n < len(reqs) {
			// A copy, so the array does not keep the taken appends alive.
			p.pending = slices.Clone(reqs[n:])
		}
		reqs = reqs[:n:n]
		p.pendingBytes -= size
		for _, q := range reqs {
			p.pendingRecs -= q.count
		}
	} else {
		p.pending = nil
		p.pendingBytes = 0
		p.pendingRecs = 0
	}
	left := p.pendingRecs
	if len(reqs) > 0 {
		close(p.spaceFreed)
		p.spaceFreed = make(chan struct{})
	}
	failed := p.failed
	syncReq := p.syncRequested
	p.syncRequested = false
	p.mu.Unlock()

	r := &round{left: left}
	if failed != nil {
		failAll(reqs, failed)
		return r
	}
	cfg := &p.log.cfg
	if len(reqs) > 0 && cfg.DiskBudgetBytes > 0 {
		reqs = p.admit(reqs)
	}
	r.reqs = reqs
	if len(reqs) == 0 {
		if syncReq && p.dirty {
			r.needs = true
			r.end = p.nextOffset
			r.pos = p.writePos
		}
		return r
	}
	if err := p.writeRequests(reqs, j); err != nil {
		p.setFailed(err)
		r.err = err
		return r
	}
	r.written = true
	r.end = p.nextOffset
	r.pos = p.writePos
	r.seg = p.active()
	p.dirty = true
	r.needs = cfg.Sync == SyncAlways || syncReq
	return r
}

// admit applies the disk budget to queued appends and returns those that
// may be written; the others are failed with ErrDiskBudget.
func (p *Partition) admit(reqs []*appendReq) []*appendReq {
	l := p.log
	var need int64
	for _, q := range reqs {
		need += int64(q.size + frameHeaderSize)
	}
	if l.bytes.Load()+need <= l.cfg.DiskBudgetBytes {
		return reqs
	}
	if l.cfg.BudgetPolicy == BudgetDeleteOldest {
		l.makeRoom(need, p)
		if l.bytes.Load()+need <= l.cfg.DiskBudgetBytes {
			return reqs
		}
	}
	// Admit what fits, in order; refuse the rest.
	var used int64
	n := 0
	for _, q := range reqs {
		sz := int64(q.size + frameHeaderSize)
		if l.bytes.Load()+used+sz > l.cfg.DiskBudgetBytes {
			break
		}
		used += sz
		n++
	}
	refused := reqs[n:]
	l.metrics.budgetRefused.Add(float64(len(refused)))
	l.budgetRefusedLog(p, len(refused))
	failAll(refused, fmt.Errorf("%w: %d of %d bytes used; raise the budget, shorten retention or let the forwarder drain", ErrDiskBudget, l.bytes.Load(), l.cfg.DiskBudgetBytes))
	return reqs[:n]
}

// writeRequests encodes the requests into frames of at most MaxBatchBytes
// and writes them to the active segment, rolling when a frame would not fit,
// and to the journal's commit if j is not nil. roundMu must be held.
func (p *Partition) writeRequests(reqs []*appendReq, j *journal) error {
	cfg := &p.log.cfg
	frameMax := min(cfg.MaxBatchBytes, retainBufBytes)
	want := frameHeaderSize
	for _, q := range reqs {
		want += q.size
	}
	if want = min(want, frameMax+frameHeaderSize); cap(p.buf) < want {
		p.buf = make([]byte, 0, want)
	}
	p.buf = p.buf[:0]
	var batch Batch
	runStart := 0 // index in p.buf where the unwritten run begins
	flushRun := func() error {
		if len(p.buf) == runStart {
			return nil
		}
		run := p.buf[runStart:]
		if err := p.writeActive(run); err != nil {
			return err
		}
		if j != nil {
			j.add(p, p.active(), p.writePos, run)
		}
		runStart = len(p.buf)
		return nil
	}
	// place settles the frame appended to p.buf at frameStart: it rolls
	// the segment first when the frame does not fit, and notes its offsets.
	place := func(frameStart int, base int64, count int, maxTs int64) error {
		frameLen := int64(len(p.buf) - frameStart)
		if p.writePos+int64(frameStart-runStart)+frameLen > cfg.SegmentMaxBytes && p.writePos+int64(frameStart-runStart) > segmentHeaderSize {
			// The frame does not fit: write what precedes it, then roll.
			frame := append([]byte(nil), p.buf[frameStart:]...)
			p.buf = p.buf[:frameStart]
			if err := flushRun(); err != nil {
				return err
			}
			if err := p.roll(); err != nil {
				return err
			}
			// The frame was sealed with the old segment's durable
			// position; in the new one only its header is durable.
			sealFrame(frame, p.durablePos)
			p.buf = append(p.buf, frame...)
		}
		p.indexFrame(base, p.writePos+int64(frameStart-runStart), maxTs)
		p.nextOffset = base + int64(count)
		return nil
	}
	emit := func() error {
		if len(batch.Records) == 0 {
			return nil
		}
		frameStart := len(p.buf)
		var err error
		p.buf, err = appendFrame(p.buf, &batch, p.durablePos)
		if err != nil {
			return err
		}
		if err := place(frameStart, batch.BaseOffset, len(batch.Records), batch.MaxTimestamp); err != nil {
			return err
		}
		batch.Records = batch.Records[:0]
		return nil
	}
	// flush ends the frame being built and writes the buffer.
	flush := func() error {
		if err := emit(); err != nil {
			return err
		}
		if err := flushRun(); err != nil {
			return err
		}
		p.buf, runStart = p.buf[:0], 0
		return nil
	}
	size := 0
	batch.BaseOffset = p.nextOffset
	batch.MaxTimestamp = minTs
	next := p.nextOffset
	for _, q := range reqs {
		if q.raw != nil {
			if err := p.writeRaw(q, next, emit, flush, place); err != nil {
				return err
			}
			next = p.nextOffset
			batch.BaseOffset = next
			batch.MaxTimestamp = minTs
			size = 0
			continue
		}
		if size > 0 && size+q.size+frameHeaderSize > frameMax {
			if err := flush(); err != nil {
				return err
			}
			batch.BaseOffset = next
			batch.MaxTimestamp = minTs
			size = 0
		}
		q.first = next
		for i := range q.recs {
			batch.Records = append(batch.Records, q.recs[i])
			if q.recs[i].Timestamp > batch.MaxTimestamp {
				batch.MaxTimestamp = q.recs[i].Timestamp
			}
		}
		next += int64(len(q.recs))
		size += q.size
	}
	if err := emit(); err != nil {
		return err
	}
	err := flushRun()
	if cap(p.buf) > retainBufBytes+frameHeaderSize {
		p.buf = nil // a burst's buffer is not kept: memory per partition stays small
	}
	return err
}

// writeRaw frames an AppendBatchesAt request's batches, their payloads
// unchanged, after the records framed before them (emit). A batch that
// does not start at next — a second writer got in since AppendBatchesAt
// checked the end — fails the round before anything of it is written: a
// frame whose base is not its position would be damage. roundMu must be
// held.
func (p *Partition) writeRaw(q *appendReq, next int64, emit, flush func() error, place func(int, int64, int, int64) error) error {
	if err := emit(); err != nil {
		return err
	}
	frameMax := min(p.log.cfg.MaxBatchBytes, retainBufBytes)
	q.first = next
	for _, b := range q.raw {
		if b.base != next {
			return fmt.Errorf("%w: %s/%d: batch of offset %d would land at %d (a second writer appended to a replica)", ErrNotContiguous, p.topic, p.id, b.base, next)
		}
		if len(p.buf) > 0 && len(p.buf)+frameHeaderSize+len(b.payload) > frameMax {
			if err := flush(); err != nil {
				return err
			}
		}
		frameStart := len(p.buf)
		p.buf = appendRawFrame(p.buf, b.payload, p.durablePos)
		if err := place(frameStart, b.base, b.count, b.maxTs); err != nil {
			return err
		}
		next = b.End()
	}
	return nil
}

// indexFrame queues an index entry for the frame about to be written at
// pos if the last entry is far enough behind. The entry reaches the .idx
// file only after the fdatasync that covers the frame (flushIndex): an
// entry on disk never points at a frame a power cut may have torn.
func (p *Partition) indexFrame(base, pos, maxTs int64) {
	s := p.active()
	if pos-s.lastIdxPos >= p.log.cfg.IndexIntervalBytes {
		pend := append(slices.Clip(s.pendingIndex()), indexEntry{relOffset: uint32(base - s.base), pos: uint32(pos), maxTsBefore: s.maxTsBefore})
		s.idxPending.Store(&pend)
		s.lastIdxPos = pos
	}
	if maxTs > s.maxTsBefore {
		s.maxTsBefore = maxTs
	}
}

// flushIndex writes the queued index entries of s whose frames start
// before synced, a position an fdatasync has just covered (frames never
// straddle it: it is the end of a write). Errors writing the index are
// logged, not fatal: the index is a cache and is rebuilt at open if it is
// bad.
func (p *Partition) flushIndex(s *segment, synced int64) {
	pend := s.pendingIndex()
	k := 0
	for k < len(pend) && int64(pend[k].pos) < synced {
		k++
	}
	if k == 0 {
		return
	}
	b := make([]byte, 0, k*indexEntrySize)
	for _, e := range pend[:k] {
		b = b[:len(b)+indexEntrySize]
		e.encode(b[len(b)-indexEntrySize:])
	}
	s.fmu.Lock()
	idx := s.idx
	s.fmu.Unlock()
	if idx == nil {
		return
	}
	_, err := idx.Write(b)
	if err == nil {
		s.idxEntries.Add(int64(len(b) / indexEntrySize))
	}
	// Entries leave the pending list once written, or once the write
	// failed (readers then start further back; the file is rebuilt at the
	// next open).
	rest := slices.Clone(pend[k:])
	s.idxPending.Store(&rest)
	if err != nil {
		p.log.cfg.Logger.Warn("log: index write failed; it will be rebuilt at next open", "segment", s.idxPath, "err", err)
		return
	}
	p.addBytes(int64(len(b)))
	p.log.metrics.writtenBytes.Add(float64(len(b)))
}

func (p *Partition) active() *segment {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.segments[len(p.segments)-1]
}

func (p *Partition) writeActive(b []byte) error {
	s := p.active()
	n, err := s.f.Write(b)
	if n > 0 {
		p.writePos += int64(n)
		p.addBytes(int64(n))
		p.log.metrics.writtenBytes.Add(float64(n))
	}
	if err == nil && n < len(b) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(b))
	}
	if err != nil {
		return fmt.Errorf("log: write %s: %w", s.logPath, err)
	}
	return nil
}

func (p *Partition) addBytes(n int64) {
	p.bytes.Add(n)
	p.log.metrics.addBytes(n)
	p.log.bytes.Add(n)
}

// roll seals the active segment (synced, whatever the policy, so that a
// sealed segment is never torn) and starts a new one at nextOffset.
// roundMu must be held.
func (p *Partition) roll() error {
	old := p.active()
	if err := p.syncActive(); err != nil {
		return err
	}
	old.fmu.Lock()
	if old.idx != nil {
		if err := old.idx.Sync(); err != nil {
			p.log.cfg.Logger.Warn("log: index sync failed; it will be rebuilt at next open", "segment", old.idxPath, "err", err)
		}
	}
	old.fmu.Unlock()
	old.size.Store(p.writePos)
	old.end.Store(p.nextOffset)
	old.maxTs.Store(old.maxTsBefore)
	s, err := p.createSegment(p.nextOffset)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.segments = append(p.segments, s)
	p.mu.Unlock()
	p.writePos = segmentHeaderSize
	p.durablePos = segmentHeaderSize // createSegment synced the header
	p.log.metrics.segmentsRolled.Inc()
	p.trimOpen()
	return nil
}

// createSegment creates and syncs a new segment with its header, and its
// index, then syncs the directory so the new name survives a power cut.
func (p *Partition) createSegment(base int64) (*segment, error) {
	cfg := &p.log.cfg
	s := newSegment(p.dir, base, cfg.OpenFile)
	f, err := cfg.OpenFile(s.logPath, os.O_CREATE|os.O_TRUNC|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log: create segment: %w", err)
	}
	if _, err := f.Write(encodeSegmentHeader(base)); err != nil {
		f.Close()
		return nil, fmt.Errorf("log: write segment header %s: %w", s.logPath, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("log: sync new segment %s: %w", s.logPath, err)
	}
	idx, err := cfg.OpenFile(s.idxPath, os.O_CREATE|os.O_TRUNC|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("log: create index: %w", err)
	}
	if _, err := idx.Write(indexHeader()); err != nil {
		f.Close()
		idx.Close()
		return nil, fmt.Errorf("log: write index header %s: %w", s.idxPath, err)
	}
	if err := syncDir(p.dir); err != nil {
		f.Close()
		idx.Close()
		return nil, fmt.Errorf("log: sync dir %s: %w", p.dir, err)
	}
	s.f, s.idx = f, idx
	s.size.Store(segmentHeaderSize)
	s.end.Store(base)
	s.lastIdxPos = segmentHeaderSize
	p.addBytes(segmentHeaderSize + indexHeaderSize)
	return s, nil
}

func (p *Partition) syncActive() error {
	s := p.active()
	d, err := p.log.fdatasync(s.f, s.logPath)
	if p.fsyncEWMA == 0 {
		p.fsyncEWMA = d
	} else {
		p.fsyncEWMA += (d - p.fsyncEWMA) / 8
	}
	if err != nil {
		return err
	}
	p.dirty = false
	p.durablePos = p.writePos
	p.flushIndex(s, p.writePos)
	return nil
}

// syncRound makes a prepared round durable by an fdatasync of the segment
// (the journal's committer makes its rounds durable itself). roundMu must
// be held.
func (p *Partition) syncRound(r *round) {
	if r.err != nil || !r.needs {
		return
	}
	if err := p.syncActive(); err != nil {
		p.setFailed(err)
		r.err = err
	}
}

// applyCheckpoint takes in what a journal checkpoint fdatasynced of the
// active segment: later frames record it as their durable position, and
// the index entries it covers may now be written. roundMu must be held.
func (p *Partition) applyCheckpoint() {
	s := p.active()
	synced := s.syncedPos.Load()
	if synced <= p.durablePos {
		return
	}
	p.durablePos = synced
	if synced >= p.writePos {
		p.dirty = false
	}
	p.flushIndex(s, synced)
}

// publish makes a round's records visible and completes its appends.
// roundMu must be held.
func (p *Partition) publish(r *round) {
	if r.err != nil {
		failAll(r.reqs, r.err)
		return
	}
	if !r.written {
		return
	}
	// With the journal a later round may have been written, and may have
	// rolled the segment, before this one is published: a sealed segment
	// got its final size at roll (after an fdatasync).
	if s := r.seg; s == p.active() {
		s.size.Store(r.pos)
		s.end.Store(r.end)
		s.maxTs.Store(s.maxTsBefore)
	}
	p.mu.Lock()
	p.end.Store(r.end)
	close(p.notify)
	p.notify = make(chan struct{})
	queued := p.pendingRecs
	p.mu.Unlock()
	// Count before releasing the appends: a caller whose Append returned
	// must find its records in the metrics.
	var n int
	for _, q := range r.reqs {
		n += q.count
	}
	p.log.metrics.appendedRecords.Add(float64(n))
	p.inFlight = n + queued
	for _, q := range r.reqs {
		q.done(q.first, nil)
	}
}

func failAll(reqs []*appendReq, err error) {
	for _, q := range reqs {
		q.done(-1, err)
	}
}

// setFailed makes the partition refuse appends until it is reopened.
// Appends already queued for a later round are failed by that round, so
// done callbacks keep their AppendAsync order on the failure path too.
func (p *Partition) setFailed(err error) {
	p.mu.Lock()
	if p.failed == nil {
		p.failed = fmt.Errorf("%w: %s/%d: %w", ErrPartitionFailed, p.topic, p.id, err)
		p.failedFlag.Store(true)
		p.log.metrics.partitionFailures.Inc()
		p.log.cfg.Logger.Error("log: partition failed; appends are refused until the node restarts", "topic", p.topic, "partition", p.id, "err", err)
	}
	queued := len(p.pending) > 0
	p.mu.Unlock()
	if queued {
		p.kick()
	}
}

// syncIfDirty asks the committer for an fdatasync (SyncInterval).
func (p *Partition) syncIfDirty() {
	p.mu.Lock()
	p.syncRequested = true
	p.mu.Unlock()
	p.kick()
}

// refuseAppends makes later appends fail with ErrClosed; Log.Close calls
// it on every partition before the journal commits what is queued.
func (p *Partition) refuseAppends() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// close stops the committer, commits what is pending, syncs and closes the
// files. Appends after close fail with ErrClosed.
func (p *Partition) close() error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.closed, p.stopped = true, true
	close(p.stop)
	p.mu.Unlock()
	<-p.done
	p.roundMu.Lock()
	defer p.roundMu.Unlock()
	r := p.prepare(nil, 0)
	if r.written || p.dirty {
		r.needs = true
	}
	p.syncRound(r)
	p.publish(r)
	var errs []error
	if p.dirty && p.Failed() == nil {
		if err := p.syncActive(); err != nil {
			errs = append(errs, err)
		}
	}
	p.mu.Lock()
	segs := p.segments
	close(p.notify)
	p.notify = make(chan struct{})
	p.mu.Unlock()
	for i, s := range segs {
		if i == len(segs)-1 {
			s.fmu.Lock()
			if s.idx != nil && p.Failed() == nil {
				if err := s.idx.Sync(); err != nil {
					errs = append(errs, err)
				}
			}
			s.fmu.Unlock()
		}
		s.release()
	}
	return errors.Join(errs...)
}

// trimOpen closes idle sealed segments beyond Config.OpenSealedMax, least
// recently used first, so open files do not grow with partition size.
func (p *Partition) trimOpen() {
	p.mu.Lock()
	var open []*segment
	for _, s := range p.segments[:len(p.segments)-1] {
		if s.isOpen() {
			open = append(open, s)
		}
	}
	p.mu.Unlock()
	for len(open) > p.log.cfg.OpenSealedMax {
		oldest := 0
		for i, s := range open {
			s.fmu.Lock()
			u := s.lastUse
			s.fmu.Unlock()
			open[oldest].fmu.Lock()
			o := open[oldest].lastUse
			open[oldest].fmu.Unlock()
			if u < o {
				oldest = i
			}
		}
		open[oldest].closeIdle()
		open = append(open[:oldest], open[oldest+1:]...)
	}
}
