package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
)

// CheckData verifies a stopped node's data directory: it opens the log as
// the node would (so a torn tail a crash left is cut, as at every start),
// reads and verifies every frame of every segment, and opens the metadata
// store (which checks its pages). It writes one line per partition and one
// per problem to w, and reports whether everything is sound. It fails with
// an error if the data cannot be examined at all, e.g. because a running
// node holds it.
func CheckData(ctx context.Context, cfg Config, w io.Writer, logger *slog.Logger) (sound bool, err error) {
	dir := filepath.Join(cfg.DataDir, "log")
	if _, err := os.Stat(dir); err != nil {
		return false, fmt.Errorf("node: check: %w (is -data right?)", err)
	}
	lc := cfg.logConfig()
	lc.Logger = logger
	lc.Recovery = log.RecoveryStrict
	start := time.Now()
	l, err := log.Open(dir, lc)
	var ce *log.CorruptionError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(w, "DAMAGED  %s at byte %d: %v\n", ce.Segment, ce.Pos, ce.Err)
		sound = false
	case errors.Is(err, log.ErrLocked):
		return false, fmt.Errorf("node: check: %w (is the node running? stop it first)", err)
	case err != nil:
		return false, fmt.Errorf("node: check: %w", err)
	default:
		sound = true
		var records, bytes int64
		n := 0
		for _, t := range l.Topics() {
			for _, p := range t.Partitions {
				fmt.Fprintf(w, "%-24s offsets %d..%d (%d records), %s\n", fmt.Sprintf("%s/%d", t.Name, p.Partition),
					p.StartOffset, p.EndOffset, p.EndOffset-p.StartOffset, humanBytes(p.Bytes))
				records += p.EndOffset - p.StartOffset
				bytes += p.Bytes
				n++
			}
		}
		for _, e := range l.Check(ctx) {
			sound = false
			if errors.As(e, &ce) {
				fmt.Fprintf(w, "DAMAGED  %s at byte %d: %v\n", ce.Segment, ce.Pos, ce.Err)
			} else {
				fmt.Fprintf(w, "ERROR    %v\n", e)
			}
		}
		if cerr := l.Close(); cerr != nil {
			return false, fmt.Errorf("node: check: close log: %w", cerr)
		}
		if sound {
			fmt.Fprintf(w, "log ok: %d partitions, %d records, %s, every frame verified in %v\n",
				n, records, humanBytes(bytes), time.Since(start).Round(time.Millisecond))
		}
	}
	mpath := filepath.Join(cfg.DataDir, "meta.db")
	if _, err := os.Stat(mpath); err == nil {
		st, err := meta.Open(mpath, meta.Config{Logger: logger, Timeout: time.Second})
		switch {
		case errors.Is(err, meta.ErrCorrupt):
			sound = false
			fmt.Fprintf(w, "DAMAGED  %s: %v\n", mpath, err)
		case err != nil:
			return false, fmt.Errorf("node: check: %w", err)
		default:
			fmt.Fprintf(w, "meta ok: %s\n", mpath)
			st.Close()
		}
	}
	if !sound {
		fmt.Fprintf(w, "\nThe data is damaged. With the node stopped, `edge repair -data %s -yes` cuts each damaged\n"+
			"partition at its first damage (records after it are lost; the cut bytes are kept as .broken files).\n"+
			"A damaged meta.db must be restored from a backup or moved away (the node then starts with fresh\n"+
			"cursors and forwards from what the central stream holds).\n", cfg.DataDir)
	}
	return sound, nil
}

// RepairData makes a stopped node's log sound (log.Repair) and writes what
// it changed to w. Cursors beyond a partition's new end are clamped by the
// node at its next start.
func RepairData(ctx context.Context, cfg Config, w io.Writer, logger *slog.Logger) error {
	dir := filepath.Join(cfg.DataDir, "log")
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("node: repair: %w (is -data right?)", err)
	}
	lc := cfg.logConfig()
	lc.Logger = logger
	rep, err := log.Repair(ctx, dir, lc)
	if errors.Is(err, log.ErrLocked) {
		return fmt.Errorf("node: repair: %w (is the node running? stop it first)", err)
	}
	if err != nil {
		return fmt.Errorf("node: repair: %w", err)
	}
	for _, c := range rep.Cuts {
		fmt.Fprintf(w, "cut      %s/%d at %s byte %d: the partition now ends at offset %d (%s)\n",
			c.Topic, c.Partition, c.Segment, c.Pos, c.Offset, c.Reason)
	}
	for _, e := range rep.Evidence {
		fmt.Fprintf(w, "evidence %s\n", e)
	}
	if len(rep.Cuts) == 0 && len(rep.Evidence) == 0 {
		fmt.Fprintln(w, "log ok: nothing to repair")
		return nil
	}
	fmt.Fprintln(w, "log repaired: every frame verified. The .broken files are evidence; delete them once you no longer need them.")
	return nil
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
