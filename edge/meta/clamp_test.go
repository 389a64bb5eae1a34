package meta_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
)

// TestClampAgainstRealLog loses a log's tail the way a power cut does
// (the segment file is cut mid-frame), reopens the log, and checks that
// cursors past the recovered end are clamped to it, cursors inside are
// left alone, and cursors of partitions the log lacks are kept and
// reported.
func TestClampAgainstRealLog(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	l, err := elog.Open(logDir, elog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for part := range int32(2) {
		p, err := l.Partition("t", part)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			// One Append per record: one frame each, so cutting bytes off the
			// end loses whole records.
			if _, err := p.Append(ctx, []elog.Record{{Timestamp: int64(i), Value: []byte(fmt.Sprintf("v%d", i))}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	var logBuf bytes.Buffer
	s := openStore(t, filepath.Join(dir, "meta.db"), meta.Config{Logger: slog.New(slog.NewJSONHandler(&logBuf, nil))})
	set := func(name, topic string, part int32, off int64) {
		t.Helper()
		if err := s.SetCursor(ctx, name, topic, part, off); err != nil {
			t.Fatal(err)
		}
	}
	set("upstream", "t", 0, n)    // at the old end: past the recovered one
	set("consumer", "t", 0, 5)    // inside: untouched
	set("upstream", "t", 1, n)    // partition 1 keeps its tail: untouched
	set("upstream", "gone", 0, 9) // topic deleted from the log
	set("upstream", "t", 7, 3)    // partition beyond the topic's count

	// Cut partition 0's active segment mid-way through its last frame.
	seg := filepath.Join(logDir, "t", "0", fmt.Sprintf("%020d.log", 0))
	st, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(seg, st.Size()-3); err != nil {
		t.Fatal(err)
	}

	l, err = elog.Open(logDir, elog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p0, _ := l.Partition("t", 0)
	recovered := p0.EndOffset()
	if recovered != n-1 {
		t.Fatalf("recovered end %d, want %d (one torn record)", recovered, n-1)
	}
	end := func(topic string, partition int32) (int64, bool) {
		p, err := l.Partition(topic, partition)
		if err != nil {
			return 0, false
		}
		return p.EndOffset(), true
	}
	res, err := s.Clamp(ctx, end)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Clamped) != 1 || res.Clamped[0].Name != "upstream" || res.Clamped[0].Topic != "t" ||
		res.Clamped[0].Partition != 0 || res.Clamped[0].Old != n || res.Clamped[0].New != recovered {
		t.Fatalf("clamped %+v, want upstream t/0 %d -> %d", res.Clamped, n, recovered)
	}
	if len(res.Orphans) != 2 {
		t.Fatalf("orphans %+v, want gone/0 and t/7", res.Orphans)
	}
	want := map[string]int64{"upstream t/0": recovered, "consumer t/0": 5, "upstream t/1": n, "upstream gone/0": 9, "upstream t/7": 3}
	for k, w := range want {
		f := strings.Fields(k)
		var pk meta.PartitionKey
		fmt.Sscanf(strings.Replace(f[1], "/", " ", 1), "%s %d", &pk.Topic, &pk.Partition)
		off, ok, err := s.Cursor(ctx, f[0], pk.Topic, pk.Partition)
		if err != nil || !ok || off != w {
			t.Errorf("cursor %s = %d %v %v, want %d", k, off, ok, err, w)
		}
	}

	// The clamp is logged at warn with the old and new offsets; orphans too.
	var clampLogged, orphans int
	for _, line := range strings.Split(strings.TrimSpace(logBuf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["level"] != "WARN" {
			continue
		}
		switch {
		case m["old"] != nil:
			if m["old"] != float64(n) || m["new"] != float64(recovered) || m["cursor"] != "upstream" || m["topic"] != "t" {
				t.Errorf("clamp log line %v", m)
			}
			clampLogged++
		case strings.Contains(m["msg"].(string), "does not have"):
			orphans++
		}
	}
	if clampLogged != 1 || orphans != 2 {
		t.Fatalf("logged %d clamps and %d orphans, want 1 and 2:\n%s", clampLogged, orphans, logBuf.String())
	}

	// Clamping again changes nothing, and ClampCursors counts.
	if c, err := s.ClampCursors(ctx, end); err != nil || c != 0 {
		t.Fatalf("second clamp: %d %v", c, err)
	}
	// The record at the clamped cursor is written again and readable.
	if off, err := p0.Append(ctx, []elog.Record{{Value: []byte("again")}}); err != nil || off != recovered {
		t.Fatalf("append after clamp: %d %v", off, err)
	}
}

// TestClampCuts cuts a multi-batch log at several depths (a few bytes,
// half the segment past its index entries, all but the header) and checks
// that every cursor ends at min(its offset, the recovered end), and that
// the recovered records below it are intact.
func TestClampCuts(t *testing.T) {
	const batches, perBatch = 40, 25 // about 100 KiB: several index entries
	for _, c := range []struct {
		name string
		size func(full int64) int64
	}{
		{"few_bytes", func(full int64) int64 { return full - 3 }},
		{"half", func(full int64) int64 { return full / 2 }},
		{"header_only", func(int64) int64 { return 32 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			logDir := filepath.Join(dir, "log")
			l, err := elog.Open(logDir, elog.Config{})
			if err != nil {
				t.Fatal(err)
			}
			if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
				t.Fatal(err)
			}
			p, _ := l.Partition("t", 0)
			for b := range batches {
				recs := make([]elog.Record, perBatch)
				for i := range recs {
					recs[i].Value = []byte(fmt.Sprintf("%0100d", b*perBatch+i))
				}
				if _, err := p.Append(ctx, recs); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			s := openStore(t, filepath.Join(dir, "meta.db"), meta.Config{})
			olds := map[string]int64{"a": 0, "b": 100, "c": 500, "d": batches*perBatch - 1, "e": batches * perBatch}
			for name, off := range olds {
				if err := s.SetCursor(ctx, name, "t", 0, off); err != nil {
					t.Fatal(err)
				}
			}
			seg := filepath.Join(logDir, "t", "0", fmt.Sprintf("%020d.log", 0))
			st, err := os.Stat(seg)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(seg, c.size(st.Size())); err != nil {
				t.Fatal(err)
			}
			l, err = elog.Open(logDir, elog.Config{})
			if err != nil {
				t.Fatalf("reopen after cut: %v", err)
			}
			defer l.Close()
			p, _ = l.Partition("t", 0)
			recovered := p.EndOffset()
			if recovered >= batches*perBatch {
				t.Fatalf("recovered end %d: the cut lost nothing", recovered)
			}
			n, err := s.ClampCursors(ctx, func(topic string, part int32) (int64, bool) {
				if topic != "t" || part != 0 {
					return 0, false
				}
				return recovered, true
			})
			if err != nil {
				t.Fatal(err)
			}
			wantClamped := 0
			for name, old := range olds {
				got, _, err := s.Cursor(ctx, name, "t", 0)
				if err != nil {
					t.Fatal(err)
				}
				if want := min(old, recovered); got != want {
					t.Errorf("cursor %s: %d, want min(%d, %d)", name, got, old, recovered)
				}
				if old > recovered {
					wantClamped++
				}
			}
			if n != wantClamped {
				t.Fatalf("ClampCursors = %d, want %d", n, wantClamped)
			}
			for off := int64(0); off < recovered; {
				recs, err := p.Read(ctx, off, 1<<20)
				if err != nil || len(recs) == 0 {
					t.Fatalf("read at %d: %v", off, err)
				}
				for _, r := range recs {
					if r.Offset != off || string(r.Value) != fmt.Sprintf("%0100d", off) {
						t.Fatalf("record at %d: offset %d %q", off, r.Offset, r.Value)
					}
					off++
				}
			}
			t.Logf("cut %d of %d bytes: recovered end %d, %d cursors clamped", st.Size()-c.size(st.Size()), st.Size(), recovered, n)
		})
	}
}
