package log_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/buftest"
)

// holdMetric returns the value of a metric's series for holder, and
// whether the series exists.
func holdMetric(t *testing.T, reg *prometheus.Registry, name, holder string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "holder" && lp.GetValue() == holder {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue(), true
					}
					return m.GetCounter().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func mustHold(t *testing.T, p *elog.Partition, name string) *elog.Hold {
	t.Helper()
	h, err := p.Hold(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestHoldsRetention: retention deletes only below every hold; moving a
// hold up or releasing it frees what it kept; the retained-bytes gauge says
// which holder keeps how much, and a released holder's series goes away.
func TestHoldsRetention(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := openLog(t, t.TempDir(), elog.Config{SegmentMaxBytes: 8 << 10, Registerer: reg})
	// Retention wants every sealed segment gone.
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1, RetentionBytes: 1}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	a, b := mustHold(t, p, "a"), mustHold(t, p, "b")
	if again := mustHold(t, p, "a"); again != a {
		t.Fatal("Partition.Hold with a taken name returned a second hold")
	}
	appendN(t, p, 0, 600)
	if got := l.Topics()[0].Partitions[0].Segments; got < 5 {
		t.Fatalf("%d segments; the test needs several", got)
	}
	ctx := context.Background()

	// New holds hold everything.
	if n := l.EnforceRetention(ctx); n != 0 || p.StartOffset() != 0 {
		t.Fatalf("deleted %d segments (start %d) with two holds at 0", n, p.StartOffset())
	}
	ra, _ := holdMetric(t, reg, "outpost_log_hold_retained_bytes", "a")
	rb, _ := holdMetric(t, reg, "outpost_log_hold_retained_bytes", "b")
	if ra <= 0 || ra != rb {
		t.Fatalf("retained bytes a=%v b=%v; both hold all sealed segments, so equal and above 0", ra, rb)
	}

	a.Set(100)
	b.Set(300)
	l.EnforceRetention(ctx)
	if s := p.StartOffset(); s > 100 || s == 0 {
		t.Fatalf("start %d: retention must delete below the lowest hold (100) and only there", s)
	}
	ra, _ = holdMetric(t, reg, "outpost_log_hold_retained_bytes", "a")
	rb, _ = holdMetric(t, reg, "outpost_log_hold_retained_bytes", "b")
	if ra <= rb || rb <= 0 {
		t.Fatalf("retained bytes a=%v b=%v; a (100) keeps more than b (300), b keeps some", ra, rb)
	}

	a.Set(1 << 62)
	l.EnforceRetention(ctx)
	if s := p.StartOffset(); s > 300 || s <= 100 {
		t.Fatalf("start %d after a moved past the end: b (300) is the lowest hold now", s)
	}
	if ra, _ = holdMetric(t, reg, "outpost_log_hold_retained_bytes", "a"); ra != 0 {
		t.Fatalf("a holds nothing, retained bytes %v", ra)
	}

	b.Release()
	b.Release() // idempotent
	b.Set(0)    // no effect once released
	l.EnforceRetention(ctx)
	if got := l.Topics()[0].Partitions[0].Segments; got != 1 {
		t.Fatalf("%d segments after every hold let go; retention keeps only the active one", got)
	}
	if _, ok := holdMetric(t, reg, "outpost_log_hold_retained_bytes", "b"); ok {
		t.Fatal("a released holder still has a retained-bytes series")
	}
	if b2 := mustHold(t, p, "b"); b2 == b || b2.Offset() != 0 {
		t.Fatalf("Hold after Release: same hold %v, offset %d; want a new one at 0", b2 == b, b2.Offset())
	}
}

// TestDeclaredHolders: Config.Holders hold every partition, including
// those of topics created after Open, from Open until the owner sets them;
// the log does not persist a hold across a reopen, so an owner re-sets it.
func TestDeclaredHolders(t *testing.T) {
	dir := t.TempDir()
	cfg := elog.Config{SegmentMaxBytes: 8 << 10, Holders: []string{"upstream"}}
	l, err := elog.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2, RetentionBytes: 1}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for part := int32(0); part < 2; part++ {
		p, _ := l.Partition("t", part)
		appendN(t, p, 0, 300)
	}
	if n := l.EnforceRetention(ctx); n != 0 {
		t.Fatalf("deleted %d segments before the declared holder set its holds", n)
	}
	p0, _ := l.Partition("t", 0)
	h := mustHold(t, p0, "upstream")
	if h.Offset() != 0 {
		t.Fatalf("declared hold at %d, want 0", h.Offset())
	}
	h.Set(200)
	l.EnforceRetention(ctx)
	p1, _ := l.Partition("t", 1)
	if p0.StartOffset() == 0 || p0.StartOffset() > 200 || p1.StartOffset() != 0 {
		t.Fatalf("start offsets %d and %d: partition 0 is released up to 200, partition 1 is held whole",
			p0.StartOffset(), p1.StartOffset())
	}
	start0 := p0.StartOffset()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: the hold is at 0 again until its owner sets it.
	l = openLog(t, dir, cfg)
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2, RetentionBytes: 1}); err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic("later", elog.TopicConfig{Partitions: 1, RetentionBytes: 1}); err != nil {
		t.Fatal(err)
	}
	later, _ := l.Partition("later", 0)
	appendN(t, later, 0, 300)
	p0, _ = l.Partition("t", 0)
	appendN(t, p0, 300, 100)
	if n := l.EnforceRetention(ctx); n != 0 {
		t.Fatalf("deleted %d segments after reopen before the owner re-set its holds", n)
	}
	if p0.StartOffset() != start0 {
		t.Fatalf("start %d after reopen, was %d", p0.StartOffset(), start0)
	}
	if h := mustHold(t, later, "upstream"); h.Offset() != 0 {
		t.Fatalf("topic created after Open: declared hold at %d, want 0", h.Offset())
	}
}

// TestHoldNames: bad holder names are refused, by Partition.Hold and by
// Config.Validate naming the field.
func TestHoldNames(t *testing.T) {
	l := openLog(t, t.TempDir(), elog.Config{})
	p := mustPartition(t, l, "t", 0)
	for _, bad := range []string{"", "a b", "ü", strings.Repeat("x", 129), "a\n"} {
		if _, err := p.Hold(bad); !errors.Is(err, elog.ErrBadHoldName) {
			t.Errorf("Hold(%q) = %v, want ErrBadHoldName", bad, err)
		}
	}
	for _, good := range []string{"upstream", "replica/pi-b", "downlink", "group:x.y_z-1", strings.Repeat("x", 128)} {
		if _, err := p.Hold(good); err != nil {
			t.Errorf("Hold(%q) = %v", good, err)
		}
	}
	for _, c := range []struct {
		holders []string
		want    string
	}{
		{[]string{"upstream", "bad name"}, "Holders[1]"},
		{[]string{"upstream", "replica/b", "upstream"}, "Holders[2]"},
	} {
		err := elog.Config{Holders: c.holders}.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(Holders: %q) = %v, want an error naming %s", c.holders, err, c.want)
		}
	}
}

// TestDiskBudgetOverridesHolds: delete-oldest deletes segments nobody holds
// first; when it must go below holds, it counts for each holder exactly the
// records that holder still needed, and logs a line per holder.
func TestDiskBudgetOverridesHolds(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs buftest.Buffer
	cfg := elog.Config{
		SegmentMaxBytes: 8 << 10, DiskBudgetBytes: 40 << 10, BudgetPolicy: elog.BudgetDeleteOldest, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	l := openLog(t, t.TempDir(), cfg)
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	p0, _ := l.Partition("t", 0)
	p1, _ := l.Partition("t", 1)
	// Partition 1 is read by nobody; on partition 0, "a" needs everything
	// and "b" everything from 50.
	a, b := mustHold(t, p0, "a"), mustHold(t, p0, "b")
	b.Set(50)
	appendN(t, p0, 0, 100)
	appendN(t, p1, 1000, 100) // newer: by age alone, partition 0 would go first
	appendN(t, p0, 100, 300)  // over budget: partition 1 goes first
	if p1.StartOffset() == 0 {
		t.Fatal("the unheld partition kept its oldest segment")
	}
	if p0.StartOffset() == 0 {
		if n, _ := holdMetric(t, reg, "outpost_log_hold_overridden_records_total", "a"); n != 0 {
			t.Fatalf("nothing of partition 0 deleted, yet %v records counted against a", n)
		}
	}
	appendN(t, p0, 400, 800) // eventually held data goes too
	start := p0.StartOffset()
	if start <= 50 {
		t.Fatalf("start %d: delete-oldest never went below both holds", start)
	}
	if l.Bytes() > cfg.DiskBudgetBytes {
		t.Fatalf("log holds %d bytes, budget %d", l.Bytes(), cfg.DiskBudgetBytes)
	}
	if n, _ := holdMetric(t, reg, "outpost_log_hold_overridden_records_total", "a"); n != float64(start) {
		t.Fatalf("a lost records [0, %d), counted %v", start, n)
	}
	if n, _ := holdMetric(t, reg, "outpost_log_hold_overridden_records_total", "b"); n != float64(start-50) {
		t.Fatalf("b lost records [50, %d), counted %v", start, n)
	}
	if a.Offset() != 0 || b.Offset() != 50 {
		t.Fatal("the budget moved a hold: holds belong to their owners")
	}
	if got := metricValue(t, reg, "outpost_log_segments_deleted_total", "budget_unforwarded"); got < 1 {
		t.Fatal("held deletions not counted by reason")
	}
	out := logs.String()
	for _, h := range []string{"holder=a", "holder=b"} {
		if !strings.Contains(out, "deleting records a reader still needs") || !strings.Contains(out, h) {
			t.Fatalf("no log line for %s:\n%s", h, out)
		}
	}
}

// TestHoldsWhileAppending: owners move their holds while appenders write
// and retention runs; retention never deletes an offset a hold needed when
// it ran (holds only move up here, so the start never passes the lowest).
func TestHoldsWhileAppending(t *testing.T) {
	rng := rand.New(rand.NewPCG(seedFor(t), 0))
	l := openLog(t, t.TempDir(), elog.Config{SegmentMaxBytes: 4 << 10})
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1, RetentionBytes: 1}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	holds := []*elog.Hold{mustHold(t, p, "a"), mustHold(t, p, "b"), mustHold(t, p, "c")}
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 2000; i++ {
			if _, err := p.Append(ctx, []elog.Record{rec(i)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	check := func() error {
		lowest := int64(1 << 62)
		for _, h := range holds {
			lowest = min(lowest, h.Offset())
		}
		l.EnforceRetention(ctx)
		if s := p.StartOffset(); s > lowest {
			return fmt.Errorf("start %d passed the lowest hold %d", s, lowest)
		}
		return nil
	}
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
		}
		h := holds[rng.IntN(len(holds))]
		if end := p.EndOffset(); end > h.Offset() {
			h.Set(h.Offset() + rng.Int64N(end-h.Offset()+1))
		}
		if err := check(); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range holds {
		h.Set(p.EndOffset())
	}
	if err := check(); err != nil {
		t.Fatal(err)
	}
	if p.StartOffset() == 0 {
		t.Fatal("retention deleted nothing: the holds never moved")
	}
}

// openSegmentFiles counts the file descriptors of this process that point
// at segment or index files under dir.
func openSegmentFiles(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir) && (strings.HasSuffix(target, ".log") || strings.HasSuffix(target, ".idx")) {
			n++
		}
	}
	return n
}

// TestHeldRetentionKeepsFilesBounded: after a restart retention by age must
// read each held segment's newest timestamp to say how much the holds keep;
// the files it opens for that are closed again beyond OpenSealedMax, so
// open files do not grow with the backlog a holder keeps.
func TestHeldRetentionKeepsFilesBounded(t *testing.T) {
	dir := t.TempDir()
	cfg := elog.Config{SegmentMaxBytes: 4 << 10, OpenSealedMax: 2, Holders: []string{"upstream"}}
	l, err := elog.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := mustPartition(t, l, "t", 0)
	appendN(t, p, 0, 600)
	segs := l.Topics()[0].Partitions[0].Segments
	if segs < 10 {
		t.Fatalf("%d segments; the test needs many", segs)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Now = func() time.Time { return time.Unix(0, 0).Add(time.Hour) } // every record is an hour old
	l = openLog(t, dir, cfg)
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1, RetentionAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if n := l.EnforceRetention(context.Background()); n != 0 {
		t.Fatalf("deleted %d held segments", n)
	}
	// The active segment's two files plus at most OpenSealedMax sealed
	// segments with both of theirs.
	if n, limit := openSegmentFiles(t, dir), 2+2*cfg.OpenSealedMax; n > limit {
		t.Fatalf("%d segment and index files open after retention walked %d held segments, limit %d", n, segs-1, limit)
	}
}
