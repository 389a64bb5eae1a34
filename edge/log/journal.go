package log

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// journal is the log's node-wide write-ahead file (Config.Journal): one
// fdatasync of the journal per commit window makes every partition's
// records of that window durable at once. Its committer goroutine is the
// writer of every partition while the journal runs: at each commit it
// takes the appends queued on every ready partition, writes their frames
// to their segments (unsynced) and the same bytes to the journal, issues
// one fdatasync, and publishes each partition's round. Segments are
// fdatasynced only when the journal file they were recorded in is about to
// be reused (a checkpoint), at roll and at close. Open replays the journal
// into the segments (journal_replay.go).
//
// Two files alternate: while one is written the other's records are being
// checkpointed. A file is truncated and written again only after every
// segment its records went to was fdatasynced, so a record is always
// durable in its segment, or in a journal file, or both.
type journal struct {
	l           *Log
	window      time.Duration
	fileMax     int64
	bufMax      int // bytes of appends one commit takes at most
	commitBytes int // queued bytes that end the commit window early
	directBytes int // queued bytes from which a commit bypasses the journal

	mu       sync.Mutex
	ready    []*Partition // partitions with queued appends, each once
	readyRec int          // records queued on them
	readyLen int          // their bytes
	firstAt  time.Time    // arrival of the oldest queued append
	// recent holds the records of the last commits (commitTarget).
	recent   [16]int
	recentAt int
	failed   error

	kick  chan struct{}
	drain chan chan struct{}
	stop  chan struct{}
	wg    sync.WaitGroup
	// toSync hands a written commit to the syncer, which fdatasyncs and
	// publishes it while the committer prepares and writes the next one.
	toSync chan *journalBatch

	// Owned by the committer goroutine.
	files  [2]*journalFile
	active int
	gen    uint64
	pos    int64 // write position in the active file
	buf    []byte
	segs   map[*segment]int64 // segments the buffered entries reached, and where they end
	direct bool               // the commit being prepared bypasses the journal
	ckpt   chan *journalFile
}

// journalFile is one of the two files and the segments its records reached.
type journalFile struct {
	path string
	f    File
	// segs maps each segment with records in this file to the position
	// after its last one: the checkpoint fdatasyncs them.
	segs map[*segment]int64
	// busy is closed when the checkpoint of this file's records is done;
	// nil when no checkpoint is pending.
	busy chan struct{}
}

const (
	journalName0 = "journal-0.wal"
	journalName1 = "journal-1.wal"
)

func journalPaths(dir string) [2]string {
	return [2]string{filepath.Join(dir, journalName0), filepath.Join(dir, journalName1)}
}

// openJournalFiles opens (creating if needed) both journal files and
// syncs the directory if it created one.
func openJournalFiles(l *Log) ([2]*journalFile, error) {
	var files [2]*journalFile
	created := false
	for i, path := range journalPaths(l.dir) {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			created = true
		}
		f, err := l.cfg.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
		if err != nil {
			for _, jf := range files[:i] {
				jf.f.Close()
			}
			return files, fmt.Errorf("log: open journal: %w", err)
		}
		files[i] = &journalFile{path: path, f: f, segs: make(map[*segment]int64)}
	}
	if created {
		if err := syncDir(l.dir); err != nil {
			files[0].f.Close()
			files[1].f.Close()
			return files, fmt.Errorf("log: sync dir %s: %w", l.dir, err)
		}
	}
	return files, nil
}

// startJournal starts writing pass gen into one of files (whose records
// are all checkpointed: Open synced every segment after the replay).
func startJournal(l *Log, files [2]*journalFile, gen uint64) (*journal, error) {
	j := &journal{
		l:           l,
		window:      max(0, l.cfg.CommitWindow),
		fileMax:     l.cfg.JournalFileBytes,
		bufMax:      int(min(1<<20, l.cfg.JournalFileBytes/8)),
		commitBytes: int(min(256<<10, l.cfg.JournalFileBytes/16)),
		directBytes: int(min(512<<10, l.cfg.JournalFileBytes/8)),
		kick:        make(chan struct{}, 1),
		drain:       make(chan chan struct{}),
		stop:        make(chan struct{}),
		files:       files,
		active:      int(gen % 2),
		gen:         gen,
		segs:        make(map[*segment]int64),
		ckpt:        make(chan *journalFile),
		toSync:      make(chan *journalBatch),
	}
	if err := j.files[j.active].f.Truncate(0); err != nil {
		return nil, fmt.Errorf("log: truncate journal %s: %w", j.files[j.active].path, err)
	}
	j.wg.Add(3)
	go j.run()
	go j.syncer()
	go j.checkpointer()
	return j, nil
}

// queued tells the journal that p has new appends (AppendAsync).
func (j *journal) queued(p *Partition, recs, size int) {
	j.mu.Lock()
	if len(j.ready) == 0 {
		j.firstAt = time.Now()
	}
	if !p.jReady {
		p.jReady = true
		j.ready = append(j.ready, p)
	}
	j.readyRec += recs
	j.readyLen += size
	wake := j.readyRec == recs || j.readyRec >= j.commitTargetLocked() || j.readyLen >= j.commitBytes
	j.mu.Unlock()
	if wake {
		j.signal()
	}
}

// commitTargetLocked is how many queued records end the commit window
// early: the most any of the last 16 commits carried. When that many
// wait, every appender that took part in a recent commit has most likely
// appended again, and waiting longer would only add latency: a pipelining
// client's full window, or a lone sequential appender (target 1), commits
// at once. At field-site rates commits are bounded by the window, and the
// largest of 16 is rarely reached early, so the window does its work. The
// maximum, not the last, so that the target does not drift down: a
// commit cut short by the window would lower it, and the next, shorter,
// lower it again. j.mu must be held.
func (j *journal) commitTargetLocked() int {
	return max(1, slices.Max(j.recent[:]))
}

func (j *journal) signal() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// run is the committer: it waits for queued appends, then for the commit
// window, enough records or enough bytes, and commits.
func (j *journal) run() {
	defer j.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-j.stop:
			return
		case done := <-j.drain:
			for j.pending() {
				j.commit()
			}
			j.handOver(&journalBatch{done: done}) // after the last commit's publish
			continue
		case <-j.kick:
		case <-timer.C:
		}
		j.mu.Lock()
		n, first := len(j.ready), j.firstAt
		due := j.readyRec >= j.commitTargetLocked() || j.readyLen >= j.commitBytes
		j.mu.Unlock()
		if n == 0 {
			continue
		}
		if wait := time.Until(first.Add(j.window)); wait > 0 && !due {
			timer.Reset(wait)
			continue
		}
		timer.Stop()
		j.commit()
		if j.pending() {
			j.signal() // what arrived during the commit, or did not fit it
		}
	}
}

func (j *journal) pending() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.ready) > 0
}

// journalRound is one partition's part of a commit.
type journalRound struct {
	p *Partition
	r *round
}

// journalBatch is one written commit on its way to the syncer.
type journalBatch struct {
	jf     *journalFile       // nil: nothing written to the journal
	direct map[*segment]int64 // segments to fdatasync instead (a large commit)
	rounds []journalRound
	recs   int
	err    error
	done   chan struct{} // a drain's barrier: closed when reached
}

// commit takes the ready partitions' appends (at most bufMax bytes; the
// rest stays queued for the next commit), writes them to their segments
// and to the journal, and hands the commit to the syncer. The committer
// then prepares the next commit while the syncer's fdatasync runs: at
// high rates the two overlap, as group commit's rounds did.
func (j *journal) commit() {
	j.mu.Lock()
	ready := j.ready
	j.ready = nil
	for _, p := range ready {
		p.jReady = false
	}
	// A commit this large costs fewer bytes and less CPU as group commit
	// did, one fdatasync per segment, than written twice: at saturation
	// the journal steps aside. FORMAT.md, "The journal".
	j.direct = j.readyLen >= j.directBytes
	j.readyRec, j.readyLen = 0, 0
	start := time.Now()
	b := &journalBatch{err: j.failed}
	j.mu.Unlock()

	for _, p := range ready {
		limit := j.bufMax - len(j.buf)
		if j.direct {
			limit = maxPendingBytes
		}
		p.roundMu.Lock()
		r := p.prepare(j, limit)
		p.roundMu.Unlock()
		b.rounds = append(b.rounds, journalRound{p, r})
		for _, q := range r.reqs {
			b.recs += q.count
		}
		if r.left > 0 {
			j.requeue(p, r.left, start)
		}
	}
	switch {
	case b.err != nil:
	case j.direct:
		b.direct = maps.Clone(j.segs)
	case len(j.buf) > 0:
		b.jf, b.err = j.write()
		if b.err != nil {
			j.fail(b.err)
		}
	}
	j.buf = j.buf[:0]
	if cap(j.buf) > 2*j.bufMax {
		j.buf = nil
	}
	clear(j.segs)
	j.mu.Lock()
	if b.recs > 0 {
		j.recent[j.recentAt] = b.recs
		j.recentAt = (j.recentAt + 1) % len(j.recent)
	}
	j.mu.Unlock()
	j.handOver(b)
}

// handOver gives b to the syncer, waiting while it works on the previous
// commit.
func (j *journal) handOver(b *journalBatch) {
	select {
	case j.toSync <- b:
	case <-j.stop:
	}
}

// syncer fdatasyncs each written commit and publishes its rounds, in
// commit order, so each partition's rounds are published in order.
func (j *journal) syncer() {
	defer j.wg.Done()
	for {
		var b *journalBatch
		select {
		case <-j.stop:
			return
		case b = <-j.toSync:
		}
		if b.done != nil {
			close(b.done)
			continue
		}
		err := b.err
		if err == nil {
			err = j.err() // a checkpoint failed since
		}
		if err == nil && b.jf != nil {
			err = j.sync(b.jf, b.recs)
		}
		if err == nil && len(b.direct) > 0 {
			err = j.syncDirect(b.direct, b.recs)
		}
		if err != nil {
			j.fail(err)
		}
		for _, jr := range b.rounds {
			p, r := jr.p, jr.r
			p.roundMu.Lock()
			if r.written && r.err == nil {
				if err != nil {
					p.setFailed(err)
					r.err = err
				} else {
					p.applyCheckpoint()
				}
			}
			p.publish(r)
			p.roundMu.Unlock()
		}
	}
}

// requeue puts p back on the ready list with the appends a commit left.
func (j *journal) requeue(p *Partition, recs int, at time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.ready) == 0 || at.Before(j.firstAt) {
		j.firstAt = at
	}
	if !p.jReady {
		p.jReady = true
		j.ready = append(j.ready, p)
	}
	j.readyRec += recs
}

// add appends frames just written to segment s of p (ending at end) to the
// commit being prepared. Only the committer goroutine calls it.
func (j *journal) add(p *Partition, s *segment, end int64, frames []byte) {
	if !j.direct {
		j.buf = appendJournalEntry(j.buf, p.topic, p.id, frames)
	}
	if end > j.segs[s] {
		j.segs[s] = end
	}
}

// syncDirect fdatasyncs the segments of a commit that bypassed the
// journal, concurrently, as the partitions' own committers would.
func (j *journal) syncDirect(segs map[*segment]int64, recs int) error {
	t0 := time.Now()
	errs := make(chan error, len(segs))
	for s, end := range segs {
		go func() { errs <- s.syncTo(end) }()
	}
	var all []error
	for range segs {
		all = append(all, <-errs)
	}
	m := j.l.metrics
	m.fsyncSeconds.Observe(time.Since(t0).Seconds())
	m.journalDirect.Inc()
	m.journalCommitRecords.Observe(float64(recs))
	return errors.Join(all...)
}

// write writes the buffered entries, page-aligned, to the active file
// and returns it.
func (j *journal) write() (*journalFile, error) {
	if j.pos+int64(len(j.buf))+2*journalPage > j.fileMax {
		if err := j.switchFile(); err != nil {
			return nil, err
		}
	}
	j.buf = appendJournalPad(j.buf, j.pos)
	sealJournalEntries(j.buf, j.gen, j.pos)
	jf := j.files[j.active]
	n, err := jf.f.Write(j.buf)
	j.pos += int64(n)
	if err == nil && n < len(j.buf) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(j.buf))
	}
	if err != nil {
		return nil, fmt.Errorf("log: write journal %s: %w", jf.path, err)
	}
	// The checkpoint of jf must cover these segments: it fdatasyncs them
	// whether or not the syncer got to this commit.
	for s, end := range j.segs {
		if end > jf.segs[s] {
			jf.segs[s] = end
		}
	}
	j.l.metrics.journalBytes.Add(float64(n))
	j.l.metrics.writtenBytes.Add(float64(n))
	return jf, nil
}

// sync fdatasyncs jf for a commit of recs records.
func (j *journal) sync(jf *journalFile, recs int) error {
	if _, err := j.l.fdatasync(jf.f, jf.path); err != nil {
		return err
	}
	m := j.l.metrics
	m.journalCommits.Inc()
	m.journalCommitRecords.Observe(float64(recs))
	return nil
}

// switchFile hands the active file to the checkpointer and continues in
// the other, once the other's own checkpoint is done.
func (j *journal) switchFile() error {
	old := j.files[j.active]
	old.busy = make(chan struct{})
	select {
	case j.ckpt <- old:
	case <-j.stop:
		return ErrClosed
	}
	next := j.files[1-j.active]
	if next.busy != nil {
		<-next.busy
		next.busy = nil
		if err := j.err(); err != nil {
			return err
		}
	}
	if err := next.f.Truncate(0); err != nil {
		return fmt.Errorf("log: truncate journal %s: %w", next.path, err)
	}
	j.active = 1 - j.active
	j.gen++
	j.pos = 0
	return nil
}

// checkpointer fdatasyncs the segments a full journal file reached, after
// which the file may be written again.
func (j *journal) checkpointer() {
	defer j.wg.Done()
	for {
		select {
		case <-j.stop:
			return
		case jf := <-j.ckpt:
			t0 := time.Now()
			var errs []error
			for s, end := range jf.segs {
				if err := s.syncTo(end); err != nil {
					errs = append(errs, err)
				}
			}
			jf.segs = make(map[*segment]int64)
			if err := errors.Join(errs...); err != nil {
				j.fail(err)
			}
			j.l.metrics.journalCheckpoints.Inc()
			j.l.metrics.checkpointSeconds.Observe(time.Since(t0).Seconds())
			close(jf.busy)
		}
	}
}

// fail makes the journal refuse every later commit: as with a partition,
// an fdatasync is never retried.
func (j *journal) fail(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed == nil {
		j.failed = fmt.Errorf("%w: journal: %w", ErrPartitionFailed, err)
		j.l.cfg.Logger.Error("log: journal failed; appends are refused until the node restarts", "err", err)
	}
}

// err returns the journal's sticky failure, or nil.
func (j *journal) err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// flush commits every queued append and returns when they are published.
// Log.Close calls it after the partitions stopped taking appends.
func (j *journal) flush() {
	done := make(chan struct{})
	select {
	case j.drain <- done:
		<-done
	case <-j.stop:
	}
}

// close stops the journal and, if empty, truncates its files. The
// partitions are closed first: their segments are synced, so nothing
// needs the journal any more unless one of them failed.
func (j *journal) close(empty bool) error {
	close(j.stop)
	j.wg.Wait()
	empty = empty && j.err() == nil
	var errs []error
	for _, jf := range j.files {
		if empty {
			if err := jf.f.Truncate(0); err != nil {
				errs = append(errs, fmt.Errorf("log: empty journal %s: %w", jf.path, err))
			} else if err := jf.f.Sync(); err != nil {
				errs = append(errs, fmt.Errorf("log: empty journal %s: %w", jf.path, err))
			}
		}
		errs = append(errs, jf.f.Close())
	}
	return errors.Join(errs...)
}
