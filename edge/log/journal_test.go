package log_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/log/logtest"
)

// journalConfig is a journal with small files, so that tests wrap them.
func journalConfig(fs *logtest.FS, reg prometheus.Registerer) elog.Config {
	return elog.Config{
		Journal: true, JournalFileBytes: 96 << 10, CommitWindow: time.Millisecond,
		SegmentMaxBytes: 64 << 10, IndexIntervalBytes: 512, MaxBatchBytes: 8 << 10,
		OpenFile: fs.Open, Registerer: reg,
	}
}

// openJournalLog opens a journal log in dir on fs with a topic "t" of n
// partitions.
func openJournalLog(t *testing.T, dir string, fs *logtest.FS, reg prometheus.Registerer, n int) (*elog.Log, []*elog.Partition) {
	t.Helper()
	l, err := elog.Open(dir, journalConfig(fs, reg))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: int32(n)}); err != nil {
		t.Fatal(err)
	}
	parts := make([]*elog.Partition, n)
	for i := range parts {
		parts[i], _ = l.Partition("t", int32(i))
	}
	return l, parts
}

// powerCut cuts the power under l (every unsynced byte of every file is
// lost) and reopens dir with the journal, with topic "t" of n partitions.
func powerCut(t *testing.T, l *elog.Log, fs *logtest.FS, dir string, n int, reg prometheus.Registerer) *elog.Log {
	t.Helper()
	fs.Crash()
	l.Close()
	fs.PowerLoss(t, nil)
	l2 := openLog(t, dir, journalConfig(logtest.NewFS(), reg))
	if err := l2.CreateTopic("t", elog.TopicConfig{Partitions: int32(n)}); err != nil {
		t.Fatal(err)
	}
	return l2
}

// appendAcked appends from g goroutines per partition until n
// records per partition are acknowledged, and returns them by partition.
func appendAcked(t *testing.T, parts []*elog.Partition, g, n int, tag string) []map[int64]string {
	t.Helper()
	acked := make([]map[int64]string, len(parts))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for pi, p := range parts {
		acked[pi] = map[int64]string{}
		for w := 0; w < g; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < n/g; i++ {
					v := fmt.Sprintf("%s-p%d-w%d-%d-%0100d", tag, pi, w, i, i)
					off, err := p.Append(context.Background(), []elog.Record{{Value: []byte(v)}})
					if err != nil {
						t.Errorf("append: %v", err)
						return
					}
					mu.Lock()
					acked[pi][off] = v
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return acked
}

// TestJournalRestoresUnsyncedSegments: with the journal, an acknowledged
// record is durable in the journal, not (yet) in its segment. A power cut
// that loses every unsynced byte of every file must leave every
// acknowledged record readable after Open, restored from the journal,
// across several journal file switches and checkpoints.
func TestJournalRestoresUnsyncedSegments(t *testing.T) {
	dir := t.TempDir()
	fs := logtest.NewFS()
	reg := prometheus.NewRegistry()
	l, parts := openJournalLog(t, dir, fs, reg, 3)
	acked := appendAcked(t, parts, 4, 1200, "a")
	commits := metricValue(t, reg, "outpost_log_journal_commits_total", "")
	checkpoints := metricValue(t, reg, "outpost_log_journal_checkpoints_total", "")
	t.Logf("3600 records: %v journal commits, %v checkpoints", commits, checkpoints)
	if checkpoints < 2 {
		t.Fatalf("%v checkpoints: the journal files did not wrap, the test did not test it", checkpoints)
	}
	if commits >= 3600 {
		t.Fatalf("%v commits for 3600 records from 12 appenders: nothing was shared", commits)
	}
	reg = prometheus.NewRegistry()
	l2 := powerCut(t, l, fs, dir, 3, reg)
	for i := range parts {
		p, _ := l2.Partition("t", int32(i))
		verify(t, 0, p, acked[i])
	}
	if got := metricValue(t, reg, "outpost_log_journal_replayed_records_total", ""); got == 0 {
		t.Fatal("nothing was restored from the journal: the power cut lost nothing, the test tested nothing")
	}
	if errs := l2.Check(context.Background()); len(errs) != 0 {
		t.Fatalf("Check after replay: %v", errs)
	}
}

// TestJournalDamage: damage inside the journal's newest pass followed by a
// commit written after the damaged bytes were synced is refused (it was
// durable, and the records it held may be nowhere else); damage to the
// last commit, with nothing after it, is a torn tail and opens.
func TestJournalDamage(t *testing.T) {
	for _, where := range []string{"first commit", "last commit"} {
		t.Run(where, func(t *testing.T) {
			dir := t.TempDir()
			fs := logtest.NewFS()
			cfg := journalConfig(fs, nil)
			cfg.CommitWindow = -1 // one commit per sequential append
			l, err := elog.Open(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			p, _ := l.Partition("t", 0)
			for i := 0; i < 3; i++ {
				if _, err := p.Append(context.Background(), []elog.Record{{Value: []byte(fmt.Sprint("v", i))}}); err != nil {
					t.Fatal(err)
				}
			}
			fs.Crash()
			l.Close()
			journal := filepath.Join(dir, "journal-1.wal") // the first pass writes file 1
			st, err := os.Stat(journal)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != 3*4096 {
				t.Fatalf("journal is %d bytes, want three page-aligned commits", st.Size())
			}
			at := int64(40)
			if where == "last commit" {
				at = 2*4096 + 40
			}
			patch(t, journal, at, []byte("XXXX"))
			_, err = elog.Open(dir, elog.Config{Journal: true})
			var ce *elog.CorruptionError
			if where == "first commit" {
				if !errors.As(err, &ce) || ce.Segment != journal || ce.Pos != 0 {
					t.Fatalf("open = %v, want a CorruptionError in %s at 0", err, journal)
				}
				return
			}
			if err != nil {
				t.Fatalf("open with a torn last commit: %v", err)
			}
		})
	}
}

// TestJournalOffAfterOn: a log written with the journal and opened
// without it replays the journal first and removes it.
func TestJournalOffAfterOn(t *testing.T) {
	dir := t.TempDir()
	fs := logtest.NewFS()
	l, err := elog.Open(dir, journalConfig(fs, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	parts := make([]*elog.Partition, 2)
	for i := range parts {
		parts[i], _ = l.Partition("t", int32(i))
	}
	acked := appendAcked(t, parts, 2, 200, "b")
	fs.Crash()
	l.Close()
	fs.PowerLoss(t, nil)

	l2 := openLog(t, dir, elog.Config{SegmentMaxBytes: 64 << 10})
	if err := l2.CreateTopic("t", elog.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	for i := range parts {
		p, _ := l2.Partition("t", int32(i))
		verify(t, 0, p, acked[i])
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "journal-*.wal")); len(m) != 0 {
		t.Fatalf("journal files left behind: %v", m)
	}
}

// TestJournalIndexVisibleBeforeCheckpoint: index entries of frames the
// journal made durable reach the .idx only at a checkpoint, but readers
// use them at once; reads by offset and by time work across the whole
// unsynced region.
func TestJournalIndexVisibleBeforeCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := journalConfig(logtest.NewFS(), nil)
	cfg.JournalFileBytes = 16 << 20 // no checkpoint during the test
	l := openLog(t, dir, cfg)
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	for i := 0; i < 200; i++ {
		if _, err := p.Append(context.Background(), []elog.Record{{Value: []byte(fmt.Sprintf("%0200d", i)), Timestamp: int64(1000 + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := os.Stat(filepath.Join(dir, "t", "0", "00000000000000000000.idx"))
	if err != nil {
		t.Fatal(err)
	}
	if idx.Size() != 8 {
		t.Fatalf("index file is %d bytes before any checkpoint, want the 8-byte header only", idx.Size())
	}
	for _, off := range []int64{0, 57, 123, 199} {
		recs, err := p.Read(context.Background(), off, 1)
		if err != nil || len(recs) == 0 || recs[0].Offset != off {
			t.Fatalf("read at %d: %v %v", off, recs, err)
		}
	}
	off, err := p.OffsetForTime(context.Background(), 1150)
	if err != nil || off != 150 {
		t.Fatalf("offset for time 1150 = %d, %v; want 150", off, err)
	}
}

// TestJournalLargeCommitsBypass: a commit of more than the direct
// threshold fdatasyncs its segments instead of writing the journal (at
// saturation writing everything twice costs more than a few fdatasyncs).
// Those records must survive a power cut too, and commits before and
// after them must still be replayed in order.
func TestJournalLargeCommitsBypass(t *testing.T) {
	dir := t.TempDir()
	fs := logtest.NewFS()
	reg := prometheus.NewRegistry()
	l, parts := openJournalLog(t, dir, fs, reg, 2)
	acked := []map[int64]string{{}, {}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pi := w % 2
			for i := 0; i < 60; i++ {
				n := 1
				if i%3 == 0 {
					n = 6 // 6 KiB appends: with four appenders, commits past the 12 KiB threshold
				}
				var recs []elog.Record
				for k := 0; k < n; k++ {
					recs = append(recs, elog.Record{Value: []byte(fmt.Sprintf("w%d-%d-%d-%01000d", w, i, k, 0))})
				}
				off, err := parts[pi].Append(context.Background(), recs)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				for k, r := range recs {
					acked[pi][off+int64(k)] = string(r.Value)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	direct := metricValue(t, reg, "outpost_log_journal_direct_commits_total", "")
	commits := metricValue(t, reg, "outpost_log_journal_commits_total", "")
	t.Logf("%v commits through the journal, %v direct", commits, direct)
	if direct == 0 || commits == 0 {
		t.Fatal("no direct commit or no journal commit: the test tested nothing")
	}
	l2 := powerCut(t, l, fs, dir, 2, nil)
	for i := range parts {
		p, _ := l2.Partition("t", int32(i))
		verify(t, 0, p, acked[i])
	}
}

// TestJournalWithRetention: retention deletes sealed segments that journal
// files still list for their checkpoint, while appends run; a power cut
// then loses every unsynced byte. The log must open (journal entries below
// a partition's start are skipped, deleted segments are not synced) and
// keep every acknowledged record retention did not delete.
func TestJournalWithRetention(t *testing.T) {
	dir := t.TempDir()
	fs := logtest.NewFS()
	cfg := journalConfig(fs, nil)
	cfg.SegmentMaxBytes = 8 << 10
	cfg.MaxBatchBytes = 2 << 10
	l, err := elog.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2, RetentionBytes: 24 << 10}); err != nil {
		t.Fatal(err)
	}
	parts := make([]*elog.Partition, 2)
	for i := range parts {
		parts[i], _ = l.Partition("t", int32(i))
	}
	stop := make(chan struct{})
	var deleted int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // retention runs all along, as housekeeping would
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				deleted += l.EnforceRetention(context.Background())
			}
		}
	}()
	acked := appendAcked(t, parts, 3, 1500, "r")
	close(stop)
	wg.Wait()
	if deleted == 0 {
		t.Fatal("retention deleted nothing: the test tested nothing")
	}
	l2 := powerCut(t, l, fs, dir, 2, nil)
	kept := 0
	for i := range parts {
		p, _ := l2.Partition("t", int32(i))
		for off := range acked[i] {
			if off < p.StartOffset() {
				delete(acked[i], off) // deleted by retention, as asked
			}
		}
		kept += len(acked[i])
		verify(t, 0, p, acked[i])
	}
	t.Logf("%d segments deleted by retention during the run; %d acknowledged records kept and checked", deleted, kept)
}

// TestJournalGap: journal records past a partition's end that do not
// continue it mean the segment lost records a checkpoint or a clean close
// had made durable, which no power cut does: Open refuses, naming the
// journal and the offsets; Recovery=truncate opens and drops them. A clean
// close leaves the journal empty.
func TestJournalGap(t *testing.T) {
	dir := t.TempDir()
	cfg := elog.Config{Journal: true, CommitWindow: -1}
	ctx := context.Background()
	appendN := func(l *elog.Log, from, n int) {
		t.Helper()
		p := mustPartition(t, l, "t", 0)
		for i := from; i < from+n; i++ {
			if _, err := p.Append(ctx, []elog.Record{rec(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := elog.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendN(l, 0, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"journal-0.wal", "journal-1.wal"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() != 0 {
			t.Fatalf("%s after a clean close: %v, %v; want empty", name, st, err)
		}
	}
	fs := logtest.NewFS()
	cfg.OpenFile = fs.Open
	l, err = elog.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendN(l, 5, 5) // offsets 5..9: in the journal only
	fs.Crash()
	l.Close()
	// The segment loses everything, 0..4 included, which were synced.
	seg := filepath.Join(dir, "t", "0", "00000000000000000000.log")
	if err := os.Truncate(seg, 32); err != nil {
		t.Fatal(err)
	}
	_, err = elog.Open(dir, elog.Config{Journal: true})
	if !errors.Is(err, elog.ErrJournalGap) || !strings.Contains(err.Error(), "journal-1.wal holds t/0 offsets 5..") {
		t.Fatalf("open = %v, want ErrJournalGap naming journal-1.wal and offset 5", err)
	}
	l = openLog(t, dir, elog.Config{Journal: true, Recovery: elog.RecoveryTruncate})
	if p := mustPartition(t, l, "t", 0); p.EndOffset() != 0 {
		t.Fatalf("end %d after Recovery=truncate, want 0 (the records after the gap dropped)", p.EndOffset())
	}
}

// TestJournalLoneAppenderDoesNotWait: the commit window ends as soon as as
// many records wait as recent commits carried, so a lone sequential
// appender commits at once even with the longest window (1 s). Were the
// window served in full, 30 appends would take 30 s, past the deadline.
func TestJournalLoneAppenderDoesNotWait(t *testing.T) {
	cfg := elog.Config{Journal: true, CommitWindow: time.Second}
	l := openLog(t, t.TempDir(), cfg)
	p := mustPartition(t, l, "t", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < 30; i++ {
		if _, err := p.Append(ctx, []elog.Record{rec(i)}); err != nil {
			t.Fatalf("append %d: %v (a lone appender waited for the commit window)", i, err)
		}
	}
}
