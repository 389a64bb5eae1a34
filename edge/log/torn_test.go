package log_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// TestPowerLossTornPages is TestPowerLoss with the power cut that keeps an
// arbitrary subset of the unsynced pages (each kept, zeroed or stale), so a
// tear can sit in the middle of a multi-frame round with valid frames after
// it. Every acknowledged record must survive, the log must open without
// repair, and reads must work across every cut point. Small batches and a
// small index interval put many frames and index entries in each round.
func TestPowerLossTornPages(t *testing.T) {
	seed := seedFor(t)
	rnd := rand.New(rand.NewPCG(seed, 11))
	rounds := 25
	if long() {
		rounds = 400
	}
	dir := t.TempDir()
	cfg := elog.Config{SegmentMaxBytes: 256 << 10, IndexIntervalBytes: 512, MaxBatchBytes: 16 << 10, JournalFileBytes: 128 << 10}
	acked := [2]map[int64]string{{}, {}}
	journaled := 0
	var replayed float64
	var torn logtest.TornStats
	cutFrames := 0.0
	for round := 0; round < rounds; round++ {
		fs := logtest.NewFS()
		cfg.OpenFile = fs.Open
		// Half the rounds write under sync: interval with a period longer
		// than the round, so that many frames are unsynced at the cut and a
		// tear has valid frames after it; their appends are not
		// acknowledgements of durability and are not checked, but the log
		// must still open without repair and read across the cut.
		durable := rnd.IntN(2) == 0
		cfg.Sync, cfg.SyncInterval = elog.SyncAlways, 0
		if !durable {
			cfg.Sync, cfg.SyncInterval = elog.SyncInterval, time.Hour
		}
		// Half the durable rounds write through the journal: segments then
		// stay unsynced until a checkpoint, so a tear can sit anywhere in
		// them and the journal (torn too) must restore what was acked.
		cfg.Journal = durable && rnd.IntN(2) == 0
		cfg.CommitWindow = time.Duration(rnd.IntN(3))*time.Millisecond - time.Nanosecond
		if cfg.Journal {
			journaled++
		}
		reg := prometheus.NewRegistry()
		cfg.Registerer = reg
		l, err := elog.Open(dir, cfg)
		if err != nil {
			t.Fatalf("round %d: open after a torn power cut: %v", round, err)
		}
		cutFrames += metricValue(t, reg, "outpost_log_torn_unsynced_frames_total", "")
		replayed += metricValue(t, reg, "outpost_log_journal_replayed_records_total", "")
		if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2}); err != nil {
			t.Fatal(err)
		}
		var parts [2]*elog.Partition
		for i := range parts {
			parts[i], _ = l.Partition("t", int32(i))
			verify(t, round, parts[i], acked[i])
		}

		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := 0; g < 2+rnd.IntN(10); g++ {
			wg.Add(1)
			pi := g % 2
			size := 40 + rnd.IntN(600)
			batch := 1 + rnd.IntN(8)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					var recs []elog.Record
					for j := 0; j < batch; j++ {
						v := fmt.Sprintf("r%d-g%d-%d-%d-", round, g, i, j)
						recs = append(recs, elog.Record{Value: []byte(v + strings.Repeat("x", size))})
					}
					off, err := parts[pi].Append(ctx, recs)
					if err != nil {
						return
					}
					if !durable {
						continue
					}
					mu.Lock()
					for j, r := range recs {
						acked[pi][off+int64(j)] = string(r.Value)
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(5+rnd.IntN(40)) * time.Millisecond) // the random moment of the cut
		fs.Crash()
		cancel()
		wg.Wait()
		l.Close() // writes nothing: the FS is dead; releases the lock
		st := fs.PowerLossTorn(t, rnd)
		torn.Kept, torn.Zeroed, torn.Stale, torn.Files = torn.Kept+st.Kept, torn.Zeroed+st.Zeroed, torn.Stale+st.Stale, torn.Files+st.Files
	}
	reg := prometheus.NewRegistry()
	l := openLog(t, dir, elog.Config{SegmentMaxBytes: 256 << 10, IndexIntervalBytes: 512, MaxBatchBytes: 16 << 10, Registerer: reg})
	cutFrames += metricValue(t, reg, "outpost_log_torn_unsynced_frames_total", "")
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range acked {
		p, _ := l.Partition("t", int32(i))
		verify(t, rounds, p, acked[i])
		n += len(acked[i])
	}
	if errs := l.Check(context.Background()); len(errs) != 0 {
		t.Fatalf("Check after the last cut: %v", errs)
	}
	t.Logf("seed %d: %d rounds (%d through the journal), %d records acknowledged, pages kept %d zeroed %d stale %d in %d files; %v valid frames cut after tears, %v records restored from the journal",
		seed, rounds, journaled, n, torn.Kept, torn.Zeroed, torn.Stale, torn.Files, cutFrames, replayed)
	if n == 0 || torn.Zeroed+torn.Stale == 0 || cutFrames == 0 || replayed == 0 {
		t.Fatal("nothing acknowledged, nothing torn, no tear with valid frames after it or nothing restored from the journal: the test tested nothing")
	}
}

// TestTornRegionVersusDurableDamage builds the two cases recovery must tell
// apart by hand, with sync: none so that several rounds stay unsynced:
// damage among frames written after the last fdatasync, with valid frames
// after it (cut, counted), and the same damage once a later frame records
// that the damaged bytes had been synced (refused, as damage to durable
// data always was).
func TestTornRegionVersusDurableDamage(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			dir := t.TempDir()
			seg := filepath.Join(dir, "t", "0", "00000000000000000000.log")
			appendAll := func(sync elog.SyncPolicy, vals ...string) {
				t.Helper()
				fs := logtest.NewFS()
				l, err := elog.Open(dir, elog.Config{Sync: sync, OpenFile: fs.Open})
				if err != nil {
					t.Fatal(err)
				}
				if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
					t.Fatal(err)
				}
				p, _ := l.Partition("t", 0)
				for _, v := range vals {
					if _, err := p.Append(context.Background(), []elog.Record{{Value: []byte(v)}}); err != nil {
						t.Fatal(err)
					}
				}
				if sync == elog.SyncNone {
					fs.Crash() // nothing more reaches the files: no sync at close
				}
				l.Close()
			}
			appendAll(elog.SyncAlways, "first, synced")
			synced := fileSize(t, seg)
			appendAll(elog.SyncNone, "a", "b", "c", "d") // four rounds, no fdatasync
			if durable {
				// A clean open syncs the segment; the next frame records it.
				appendAll(elog.SyncNone, "after")
			}
			var round []frame
			for _, f := range frames(t, seg) {
				if f.pos >= synced {
					round = append(round, f)
				}
			}
			if len(round) < 4 {
				t.Fatalf("setup: %d frames after the synced position, want at least 4", len(round))
			}
			patch(t, seg, round[1].pos, make([]byte, 8)) // "b": a page the power cut zeroed

			reg := prometheus.NewRegistry()
			l, err := elog.Open(dir, elog.Config{Registerer: reg})
			if durable {
				var ce *elog.CorruptionError
				if !errors.As(err, &ce) || ce.Pos != round[1].pos {
					t.Fatalf("open = %v, want a CorruptionError at %d (the damaged bytes had been synced)", err, round[1].pos)
				}
				return
			}
			if err != nil {
				t.Fatalf("open after a torn unsynced region: %v", err)
			}
			defer l.Close()
			if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			p, _ := l.Partition("t", 0)
			if p.EndOffset() != round[1].baseOffset {
				t.Fatalf("end %d, want %d (cut at the tear)", p.EndOffset(), round[1].baseOffset)
			}
			if got := metricValue(t, reg, "outpost_log_torn_unsynced_frames_total", ""); got != 2 {
				t.Fatalf("torn unsynced frames counted %v, want 2 (c and d)", got)
			}
			broken, _ := filepath.Glob(seg + ".*.broken")
			if len(broken) == 0 {
				t.Fatal("no evidence kept")
			}
			if _, err := os.Stat(broken[0]); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestIndexEntriesFollowFsync: an index entry reaches the .idx file only
// after the fdatasync that covers the frame it points at, so that no entry
// on disk can point into a region a power cut may tear. Under sync: none
// nothing is synced until close: the .idx holds no entry before, and
// entries for the frames after it.
func TestIndexEntriesFollowFsync(t *testing.T) {
	dir := t.TempDir()
	l, err := elog.Open(dir, elog.Config{Sync: elog.SyncNone, IndexIntervalBytes: 256})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	for i := 0; i < 50; i++ {
		if _, err := p.Append(context.Background(), []elog.Record{{Value: []byte(strings.Repeat("v", 200))}}); err != nil {
			t.Fatal(err)
		}
	}
	idx := filepath.Join(dir, "t", "0", "00000000000000000000.idx")
	if got := fileSize(t, idx); got != 8 {
		t.Fatalf(".idx is %d bytes before any fdatasync, want 8 (the header only)", got)
	}
	// Reads find the records without the entries (they scan from the last
	// entry on disk).
	recs, err := p.Read(context.Background(), 40, 1<<20)
	if err != nil || len(recs) != 10 || recs[0].Offset != 40 {
		t.Fatalf("read from 40: %d records, %v", len(recs), err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, idx); got <= 8 || (got-8)%16 != 0 {
		t.Fatalf(".idx is %d bytes after close, want the header and whole entries", got)
	}
}
