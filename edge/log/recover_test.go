package log_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	elog "github.com/outpost-edge/outpost/edge/log"
)

const corruptN = 195

// corruptCfg makes small segments so one partition has sealed segments and
// an active one with many frames.
func corruptCfg() elog.Config {
	return elog.Config{SegmentMaxBytes: 8 << 10, IndexIntervalBytes: 2048, MaxBatchBytes: 2 << 10}
}

// buildLog writes corruptN records, one frame each, and closes the log.
func buildLog(t *testing.T, dir string) {
	t.Helper()
	l, err := elog.Open(dir, corruptCfg())
	if err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	for i := 0; i < corruptN; i++ {
		if _, err := p.Append(context.Background(), []elog.Record{rec(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

type segFiles struct {
	logs []string // sorted by base; last is active
	idxs []string
}

func listSegments(t *testing.T, dir string) segFiles {
	t.Helper()
	pdir := filepath.Join(dir, "t", "0")
	ents, err := os.ReadDir(pdir)
	if err != nil {
		t.Fatal(err)
	}
	var sf segFiles
	for _, e := range ents {
		switch filepath.Ext(e.Name()) {
		case ".log":
			sf.logs = append(sf.logs, filepath.Join(pdir, e.Name()))
		case ".idx":
			sf.idxs = append(sf.idxs, filepath.Join(pdir, e.Name()))
		}
	}
	sort.Strings(sf.logs)
	sort.Strings(sf.idxs)
	if len(sf.logs) < 3 {
		t.Fatalf("want at least 3 segments, have %d", len(sf.logs))
	}
	return sf
}

type frame struct {
	pos, len   int64
	baseOffset int64
}

// frames walks a segment's frames.
func frames(t *testing.T, path string) []frame {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []frame
	for pos := 32; pos < len(b); {
		batch, n, err := elog.DecodeFrame(b[pos:])
		if err != nil {
			t.Fatalf("walk %s at %d: %v", path, pos, err)
		}
		out = append(out, frame{int64(pos), int64(n), batch.BaseOffset})
		pos += n
	}
	return out
}

// afterLastIndexEntry returns the frames of the active segment that lie
// after its last index entry: open scans only those (sealed segments and
// frames before the entry are verified by reads and by Check).
func afterLastIndexEntry(t *testing.T, sf segFiles) []frame {
	t.Helper()
	act := sf.logs[len(sf.logs)-1]
	idx, err := os.ReadFile(strings.TrimSuffix(act, ".log") + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	last := int64(32)
	if n := (len(idx) - 8) / 16; n > 0 {
		e := idx[8+(n-1)*16:]
		last = int64(e[4])<<24 | int64(e[5])<<16 | int64(e[6])<<8 | int64(e[7])
	}
	var out []frame
	for _, f := range frames(t, act) {
		if f.pos > last {
			out = append(out, f)
		}
	}
	if len(out) < 4 {
		t.Fatalf("test setup: only %d frames after the last index entry", len(out))
	}
	return out
}

func patch(t *testing.T, path string, pos int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, pos); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// expectation of a corruption case: the end offset after recovery, or a
// refusal naming segment and position.
type expect struct {
	end        int64 // -1: refused
	refusedSeg string
	refusedPos int64
	cutEnd     int64 // with RecoveryTruncate, for refusals
	broken     bool  // a .broken file is kept
}

func openLogNoCheck(tb testing.TB, dir string, cfg elog.Config) *elog.Log {
	tb.Helper()
	l, err := elog.Open(dir, cfg)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

func TestRecoveryCorruptionTable(t *testing.T) {
	cases := []struct {
		name    string
		corrupt func(t *testing.T, sf segFiles) expect
	}{
		{"clean", func(t *testing.T, sf segFiles) expect { return expect{end: corruptN} }},
		{"torn_header", func(t *testing.T, sf segFiles) expect {
			act := sf.logs[len(sf.logs)-1]
			fr := frames(t, act)
			last := fr[len(fr)-1]
			os.Truncate(act, last.pos+5)
			return expect{end: last.baseOffset, broken: true}
		}},
		{"torn_payload", func(t *testing.T, sf segFiles) expect {
			act := sf.logs[len(sf.logs)-1]
			fr := frames(t, act)
			last := fr[len(fr)-1]
			os.Truncate(act, last.pos+last.len-3)
			return expect{end: last.baseOffset, broken: true}
		}},
		{"bad_crc_tail", func(t *testing.T, sf segFiles) expect {
			act := sf.logs[len(sf.logs)-1]
			fr := frames(t, act)
			last := fr[len(fr)-1]
			patch(t, act, last.pos+20, []byte{0xFF, 0xFE})
			return expect{end: last.baseOffset, broken: true}
		}},
		{"bad_crc_middle", func(t *testing.T, sf segFiles) expect {
			act := sf.logs[len(sf.logs)-1]
			fr := afterLastIndexEntry(t, sf)
			bad := fr[len(fr)-4]
			patch(t, act, bad.pos+20, []byte{0xFF, 0xFE})
			return expect{end: -1, refusedSeg: act, refusedPos: bad.pos, cutEnd: bad.baseOffset}
		}},
		{"len_past_eof", func(t *testing.T, sf segFiles) expect {
			act := sf.logs[len(sf.logs)-1]
			fr := frames(t, act)
			last := fr[len(fr)-1]
			patch(t, act, last.pos+4, []byte{0x00, 0x10, 0x00, 0x00})
			return expect{end: last.baseOffset, broken: true}
		}},
		{"zeroed_sector", func(t *testing.T, sf segFiles) expect {
			act := sf.logs[len(sf.logs)-1]
			fr := afterLastIndexEntry(t, sf)
			zeroAt := fr[0].pos + 7
			patch(t, act, zeroAt, make([]byte, 300))
			first := fr[0]
			return expect{end: -1, refusedSeg: act, refusedPos: first.pos, cutEnd: first.baseOffset}
		}},
		{"zeroed_tail", func(t *testing.T, sf segFiles) expect {
			act := sf.logs[len(sf.logs)-1]
			fr := frames(t, act)
			size := fileSize(t, act)
			patch(t, act, size-300, make([]byte, 300))
			var hit frame
			for _, f := range fr {
				if f.pos+f.len > size-300 {
					hit = f
					break
				}
			}
			return expect{end: hit.baseOffset, broken: true}
		}},
		{"garbage_after_tail", func(t *testing.T, sf segFiles) expect {
			act := sf.logs[len(sf.logs)-1]
			g := make([]byte, 1000)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range g {
				g[i] = byte(r.IntN(256))
			}
			patch(t, act, fileSize(t, act), g)
			return expect{end: corruptN, broken: true}
		}},
		{"garbage_frame_magic_after_tail", func(t *testing.T, sf segFiles) expect {
			// Bytes that start like a frame but do not validate are still a tail.
			act := sf.logs[len(sf.logs)-1]
			patch(t, act, fileSize(t, act), []byte{0x4F, 0x50, 0x42, 0x31, 0, 0, 0, 9, 1, 2, 3, 4, 5})
			return expect{end: corruptN, broken: true}
		}},
		{"missing_index", func(t *testing.T, sf segFiles) expect {
			for _, p := range sf.idxs {
				os.Remove(p)
			}
			return expect{end: corruptN}
		}},
		{"truncated_index", func(t *testing.T, sf segFiles) expect {
			for _, p := range sf.idxs {
				os.Truncate(p, 8+16+7)
			}
			return expect{end: corruptN}
		}},
		{"garbage_index", func(t *testing.T, sf segFiles) expect {
			for _, p := range sf.idxs {
				if fileSize(t, p) > 24 {
					patch(t, p, 8, []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF})
				}
			}
			return expect{end: corruptN}
		}},
		{"empty_new_segment", func(t *testing.T, sf segFiles) expect {
			// A crash right after creating the next segment's file.
			dir := filepath.Dir(sf.logs[0])
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.log", corruptN)), nil, 0o644)
			return expect{end: corruptN}
		}},
		{"torn_new_segment_header", func(t *testing.T, sf segFiles) expect {
			dir := filepath.Dir(sf.logs[0])
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.log", corruptN)), []byte("OUTPS"), 0o644)
			return expect{end: corruptN, broken: true}
		}},
		{"sealed_bad_header", func(t *testing.T, sf segFiles) expect {
			patch(t, sf.logs[1], 2, []byte("XX"))
			base := frames(t, sf.logs[1])[0].baseOffset
			return expect{end: -1, refusedSeg: sf.logs[1], refusedPos: 0, cutEnd: base}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []elog.Recovery{elog.RecoveryStrict, elog.RecoveryTruncate} {
				dir := t.TempDir()
				buildLog(t, dir)
				want := tc.corrupt(t, listSegments(t, dir))
				cfg := corruptCfg()
				cfg.Recovery = mode
				l, err := elog.Open(dir, cfg)
				wantEnd := want.end
				if want.end < 0 {
					if mode == elog.RecoveryStrict {
						var ce *elog.CorruptionError
						if !errors.As(err, &ce) {
							t.Fatalf("strict open: got %v, want a *CorruptionError", err)
						}
						if ce.Segment != want.refusedSeg || ce.Pos != want.refusedPos {
							t.Fatalf("corruption reported at %s:%d, want %s:%d", ce.Segment, ce.Pos, want.refusedSeg, want.refusedPos)
						}
						if !strings.Contains(err.Error(), "RecoveryTruncate") || !strings.Contains(err.Error(), "edge repair") {
							t.Errorf("error does not say what to do next: %v", err)
						}
						continue
					}
					wantEnd = want.cutEnd
				}
				if err != nil {
					t.Fatalf("open (recovery %d): %v", mode, err)
				}
				p, err := l.Partition("t", 0)
				if err != nil {
					t.Fatal(err)
				}
				if p.EndOffset() != wantEnd {
					t.Fatalf("recovery %d: end offset %d, want %d", mode, p.EndOffset(), wantEnd)
				}
				// Every surviving record is intact and in place.
				for off := p.StartOffset(); off < wantEnd; {
					recs, err := p.Read(context.Background(), off, 1<<16)
					if err != nil {
						t.Fatalf("read at %d: %v", off, err)
					}
					for _, r := range recs {
						if r.Offset != off || string(r.Value) != string(rec(int(off)).Value) {
							t.Fatalf("record %d: got offset %d value %q", off, r.Offset, r.Value)
						}
						off++
					}
				}
				// The log goes on appending after recovery, contiguously.
				off, err := p.Append(context.Background(), []elog.Record{rec(int(wantEnd))})
				if err != nil || off != wantEnd {
					t.Fatalf("append after recovery: offset %d err %v, want %d", off, err, wantEnd)
				}
				if want.broken && mode == elog.RecoveryStrict {
					m, _ := filepath.Glob(filepath.Join(dir, "t", "0", "*.broken"))
					if len(m) == 0 {
						t.Errorf("no .broken evidence kept")
					}
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				// And it reopens cleanly, with the appended record.
				l2 := openLog(t, dir, cfg)
				p2, _ := l2.Partition("t", 0)
				if p2.EndOffset() != wantEnd+1 {
					t.Fatalf("after reopen end %d, want %d", p2.EndOffset(), wantEnd+1)
				}
			}
		})
	}
}

// Damage before the active segment's last index entry, or in a sealed
// segment, is not scanned at open (that keeps open fast); Read and Check
// must report it with file and position, and never return wrong records.
func TestDamageFoundByReadAndCheck(t *testing.T) {
	dir := t.TempDir()
	buildLog(t, dir)
	sf := listSegments(t, dir)
	fr := frames(t, sf.logs[0])
	bad := fr[3]
	patch(t, sf.logs[0], bad.pos+20, []byte{0xEE, 0xEE})
	l := openLogNoCheck(t, dir, corruptCfg())
	p, _ := l.Partition("t", 0)
	_, err := p.Read(context.Background(), bad.baseOffset, 1<<16)
	var ce *elog.CorruptionError
	if !errors.As(err, &ce) || ce.Segment != sf.logs[0] || ce.Pos != bad.pos {
		t.Fatalf("read of damaged frame: %v, want CorruptionError at %s:%d", err, sf.logs[0], bad.pos)
	}
	// Records before the damage still read.
	recs, err := p.Read(context.Background(), 0, int(bad.pos)/2) // a budget that ends before the damaged frame
	if err != nil || len(recs) == 0 {
		t.Fatalf("read before damage: %d records, %v", len(recs), err)
	}
	errs := l.Check(context.Background())
	if len(errs) != 1 || !errors.As(errs[0], &ce) || ce.Pos != bad.pos {
		t.Fatalf("Check = %v, want one CorruptionError at %d", errs, bad.pos)
	}
}
