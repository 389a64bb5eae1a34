package log_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// TestRepair: damage inside a sealed segment (which Open does not scan)
// and in the active segment's middle. Repair cuts the partition at the
// first damage, keeps the rest as evidence, and leaves a log that opens
// strictly, passes Check, keeps every record before the damage and takes
// appends at the new end.
func TestRepair(t *testing.T) {
	cases := []struct {
		name string
		seg  int // which segment to damage; -1 the active one
		at   func(fr []frame) (pos int64, damage []byte)
		// openFinds: Open itself finds and cuts this damage (recovery
		// truncate); otherwise only Check does and Repair makes the cut.
		openFinds bool
	}{
		{"sealed_middle_frame", 1, func(fr []frame) (int64, []byte) { return fr[2].pos + 20, []byte{0xEE, 0xEE} }, false},
		{"sealed_first_frame", 0, func(fr []frame) (int64, []byte) { return fr[0].pos + 9, []byte{0x00} }, false},
		{"sealed_header", 1, func(fr []frame) (int64, []byte) { return 3, []byte("XXXX") }, true},
		{"active_middle", -1, func(fr []frame) (int64, []byte) { return fr[1].pos + 12, []byte{0xAB, 0xCD, 0xEF} }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			buildLog(t, dir)
			sf := listSegments(t, dir)
			seg := c.seg
			if seg < 0 {
				seg = len(sf.logs) - 1
			}
			fr := frames(t, sf.logs[seg])
			pos, damage := c.at(fr)
			// The first record lost: the frame holding pos (or the segment's
			// base for header damage).
			wantEnd := fr[0].baseOffset
			for _, f := range fr {
				if f.pos <= pos {
					wantEnd = f.baseOffset
				}
			}
			if pos < 32 {
				wantEnd = fr[0].baseOffset
			}
			patch(t, sf.logs[seg], pos, damage)

			rep, err := elog.Repair(context.Background(), dir, corruptCfg())
			if err != nil {
				t.Fatalf("repair: %v", err)
			}
			switch {
			case c.openFinds && len(rep.Cuts) != 0:
				t.Fatalf("cuts %+v, want none (Open cuts this damage itself)", rep.Cuts)
			case !c.openFinds && (len(rep.Cuts) != 1 || rep.Cuts[0].Segment != sf.logs[seg] || rep.Cuts[0].Offset != wantEnd):
				t.Fatalf("cuts %+v, want one in %s ending the partition at %d", rep.Cuts, sf.logs[seg], wantEnd)
			}
			if len(rep.Evidence) == 0 {
				t.Fatal("no evidence kept")
			}
			for _, e := range rep.Evidence {
				if _, err := os.Stat(e); err != nil || !strings.HasSuffix(e, ".broken") {
					t.Errorf("evidence %s: %v", e, err)
				}
			}

			cfg := corruptCfg()
			cfg.Recovery = elog.RecoveryStrict
			l := openLogNoCheck(t, dir, cfg)
			if errs := l.Check(context.Background()); len(errs) > 0 {
				t.Fatalf("Check after repair: %v", errs)
			}
			p := mustPartition(t, l, "t", 0)
			if p.EndOffset() != wantEnd {
				t.Fatalf("end %d, want %d", p.EndOffset(), wantEnd)
			}
			for off := int64(0); off < wantEnd; {
				recs, err := p.Read(context.Background(), off, 1<<16)
				if err != nil {
					t.Fatalf("read %d: %v", off, err)
				}
				for _, r := range recs {
					if r.Offset != off || string(r.Value) != string(rec(int(off)).Value) {
						t.Fatalf("record %d: offset %d value %q", off, r.Offset, r.Value)
					}
					off++
				}
			}
			if off, err := p.Append(context.Background(), []elog.Record{rec(int(wantEnd))}); err != nil || off != wantEnd {
				t.Fatalf("append after repair: offset %d, %v", off, err)
			}
			// A second repair of a sound log changes nothing.
			l.Close()
			rep, err = elog.Repair(context.Background(), dir, corruptCfg())
			if err != nil || len(rep.Cuts) != 0 || len(rep.Evidence) != 0 {
				t.Fatalf("repair of a sound log: %+v, %v", rep, err)
			}
		})
	}
}

// TestRepairRefusesOpenLog: the log's lock keeps Repair off a log a node
// has open.
func TestRepairRefusesOpenLog(t *testing.T) {
	dir := t.TempDir()
	buildLog(t, dir)
	openLogNoCheck(t, dir, corruptCfg())
	if _, err := elog.Repair(context.Background(), dir, corruptCfg()); !errors.Is(err, elog.ErrLocked) {
		t.Fatalf("repair of an open log: %v, want ErrLocked", err)
	}
}
