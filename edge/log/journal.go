package log

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// journal is the log's node-wide write-ahead file (Config.Journal): every
// partition's frames are written to their segment as before, unsynced, and
// to the journal, and one fdatasync of the journal makes a whole commit
// window durable for every partition at once. Segments are fdatasynced
// only when the journal file they were recorded in is about to be reused
// (a checkpoint), at roll and at close. Open replays the journal into the
// segments (journal_replay.go).
//
// Two files alternate: while one is written the other's records are being
// checkpointed. A file is truncated and written again only after every
// segment its records went to was fdatasynced, so a record is always
// durable in its segment, or in a journal file, or both.
type journal struct {
	l           *Log
	window      time.Duration
	fileMax     int64
	bufMax      int // buffered bytes beyond which submitters wait
	commitBytes int // buffered bytes that end the commit window early

	mu         sync.Mutex
	buf        []byte // entries not yet written (gen, durable, crc unset)
	cur        *journalCommit
	firstAt    time.Time // arrival of buf's first entry
	spaceFreed chan struct{}
	failed     error
	closed     bool

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup

	// Owned by the committer goroutine.
	files  [2]*journalFile
	active int
	gen    uint64
	pos    int64 // write position in the active file
	spare  []byte
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

// journalCommit is one commit window: the partitions whose records it
// carries wait on done.
type journalCommit struct {
	done chan struct{}
	err  error
	segs map[*segment]int64
	recs int
}

func newJournalCommit() *journalCommit {
	return &journalCommit{done: make(chan struct{}), segs: make(map[*segment]int64)}
}

// wait blocks until the commit is durable or failed.
func (c *journalCommit) wait() error {
	<-c.done
	return c.err
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
		cur:         newJournalCommit(),
		spaceFreed:  make(chan struct{}),
		kick:        make(chan struct{}, 1),
		stop:        make(chan struct{}),
		files:       files,
		active:      int(gen % 2),
		gen:         gen,
		ckpt:        make(chan *journalFile),
	}
	if err := j.files[j.active].f.Truncate(0); err != nil {
		return nil, fmt.Errorf("log: truncate journal %s: %w", j.files[j.active].path, err)
	}
	j.wg.Add(2)
	go j.run()
	go j.checkpointer()
	return j, nil
}

// submit queues frames just written to segment s of p (ending at end, the
// segment position after them) for the next commit and returns it. It
// waits while the buffer is full.
func (j *journal) submit(p *Partition, s *segment, end int64, frames []byte, recs int) (*journalCommit, error) {
	j.mu.Lock()
	for j.failed == nil && !j.closed && len(j.buf) > 0 && len(j.buf)+len(frames) > j.bufMax {
		ch := j.spaceFreed
		j.mu.Unlock()
		j.signal()
		<-ch
		j.mu.Lock()
	}
	defer j.mu.Unlock()
	if j.failed != nil {
		return nil, j.failed
	}
	if j.closed {
		return nil, ErrClosed
	}
	if len(j.buf) == 0 {
		j.firstAt = time.Now()
	}
	j.buf = appendJournalEntry(j.buf, p.topic, p.id, frames)
	c := j.cur
	if end > c.segs[s] {
		c.segs[s] = end
	}
	c.recs += recs
	if len(j.buf) == len(frames)+journalFixedSize+len(p.topic) || len(j.buf) >= j.commitBytes {
		j.signal()
	}
	return c, nil
}

func (j *journal) signal() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// run is the committer: it waits for the first entry, then for the commit
// window or enough bytes, and writes and fdatasyncs everything buffered.
func (j *journal) run() {
	defer j.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-j.stop:
			j.commit()
			return
		case <-j.kick:
		case <-timer.C:
		}
		j.mu.Lock()
		n, first := len(j.buf), j.firstAt
		j.mu.Unlock()
		if n == 0 {
			continue
		}
		if wait := time.Until(first.Add(j.window)); wait > 0 && n < j.commitBytes {
			timer.Reset(wait)
			continue
		}
		timer.Stop()
		j.commit()
	}
}

// commit writes what is buffered, page-aligned, and fdatasyncs it.
func (j *journal) commit() {
	j.mu.Lock()
	buf, c := j.buf, j.cur
	j.buf, j.cur = j.spare[:0], newJournalCommit()
	j.spare = nil
	close(j.spaceFreed)
	j.spaceFreed = make(chan struct{})
	failed := j.failed
	j.mu.Unlock()
	if len(buf) == 0 {
		close(c.done)
		return
	}
	err := failed
	if err == nil {
		err = j.write(buf, c)
		if err != nil {
			j.fail(err)
		}
	}
	c.err = err
	close(c.done)
	if cap(buf) <= 2*j.bufMax {
		j.spare = buf
	}
}

func (j *journal) write(buf []byte, c *journalCommit) error {
	if j.pos+int64(len(buf))+2*journalPage > j.fileMax {
		if err := j.switchFile(); err != nil {
			return err
		}
	}
	buf = appendJournalPad(buf, j.pos)
	sealJournalEntries(buf, j.gen, j.pos)
	jf := j.files[j.active]
	n, err := jf.f.Write(buf)
	j.pos += int64(n)
	if err == nil && n < len(buf) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(buf))
	}
	if err != nil {
		return fmt.Errorf("log: write journal %s: %w", jf.path, err)
	}
	t0 := time.Now()
	err = jf.f.Sync()
	d := time.Since(t0)
	m := j.l.metrics
	m.fsyncSeconds.Observe(d.Seconds())
	if d > time.Second {
		j.l.cfg.Logger.Warn("log: slow fdatasync; the storage may be failing or worn", "journal", jf.path, "took", d)
	}
	if err != nil {
		return fmt.Errorf("log: fdatasync %s: %w", jf.path, err)
	}
	for s, end := range c.segs {
		if end > jf.segs[s] {
			jf.segs[s] = end
		}
	}
	m.journalCommits.Inc()
	m.journalBytes.Add(float64(len(buf)))
	m.journalCommitRecords.Observe(float64(c.recs))
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
		// Close: the checkpoint runs here; partitions are closed and synced.
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

// close commits what is buffered and stops. Partitions are closed first:
// their segments are synced, so nothing needs the journal any more.
func (j *journal) close() error {
	j.mu.Lock()
	j.closed = true
	close(j.spaceFreed)
	j.spaceFreed = make(chan struct{})
	j.mu.Unlock()
	close(j.stop)
	j.wg.Wait()
	var errs []error
	for _, jf := range j.files {
		errs = append(errs, jf.f.Close())
	}
	return errors.Join(errs...)
}
