package log_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	elog "github.com/outpost-edge/outpost/edge/log"
)

func appendN(t *testing.T, p *elog.Partition, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := p.Append(context.Background(), []elog.Record{rec(i)}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

func TestRetentionByBytes(t *testing.T) {
	l := openLog(t, t.TempDir(), elog.Config{SegmentMaxBytes: 8 << 10})
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1, RetentionBytes: 24 << 10}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	appendN(t, p, 0, 600)
	before := p.Bytes()
	n := l.EnforceRetention(context.Background())
	if n == 0 {
		t.Fatalf("nothing deleted with %d bytes over a 24 KiB retention", before)
	}
	if p.Bytes() > 24<<10+8<<10 {
		t.Fatalf("after retention %d bytes, want at most retention + one segment", p.Bytes())
	}
	if p.StartOffset() == 0 || p.EndOffset() != 600 {
		t.Fatalf("start %d end %d", p.StartOffset(), p.EndOffset())
	}
	if _, err := p.Read(context.Background(), 0, 100); !errors.Is(err, elog.ErrOffsetOutOfRange) {
		t.Fatalf("read below start: %v, want ErrOffsetOutOfRange", err)
	}
	recs, err := p.Read(context.Background(), p.StartOffset(), 100)
	if err != nil || len(recs) == 0 || recs[0].Offset != p.StartOffset() {
		t.Fatalf("read at start: %v %v", recs, err)
	}
}

func TestRetentionByAgeAndHold(t *testing.T) {
	var now atomic.Int64
	now.Store(int64(time.Hour))
	cfg := elog.Config{
		SegmentMaxBytes: 8 << 10,
		Now:             func() time.Time { return time.Unix(0, now.Load()) },
	}
	l := openLog(t, t.TempDir(), cfg)
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1, RetentionAge: time.Minute}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	hold := mustHold(t, p, "upstream")
	hold.Set(100)
	appendN(t, p, 0, 400) // timestamps 0..399 ms
	if n := l.EnforceRetention(context.Background()); n == 0 {
		t.Fatal("old segments were kept")
	}
	if p.StartOffset() > 100 {
		t.Fatalf("retention deleted held offsets: start %d > hold 100", p.StartOffset())
	}
	hold.Set(1 << 62)
	l.EnforceRetention(context.Background())
	info := l.Topics()[0].Partitions[0]
	if info.Segments != 1 {
		t.Fatalf("all sealed segments are older than a minute; %d segments left", info.Segments)
	}
	// Young data is kept.
	now.Store(0)
	appendN(t, p, 400, 200)
	if n := l.EnforceRetention(context.Background()); n != 0 {
		t.Fatalf("deleted %d young segments", n)
	}
}

func TestDiskBudgetRefuse(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := elog.Config{SegmentMaxBytes: 8 << 10, DiskBudgetBytes: 24 << 10, Registerer: reg}
	l := openLog(t, t.TempDir(), cfg)
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	ctx := context.Background()
	var refused error
	acked := 0
	for i := 0; i < 1000; i++ {
		if _, err := p.Append(ctx, []elog.Record{rec(i)}); err != nil {
			refused = err
			break
		}
		acked++
	}
	if !errors.Is(refused, elog.ErrDiskBudget) {
		t.Fatalf("over budget: %v, want ErrDiskBudget", refused)
	}
	if l.Bytes() > cfg.DiskBudgetBytes {
		t.Fatalf("log holds %d bytes, budget %d", l.Bytes(), cfg.DiskBudgetBytes)
	}
	if p.EndOffset() != int64(acked) {
		t.Fatalf("refused record became visible: end %d, acked %d", p.EndOffset(), acked)
	}
	if got := metricValue(t, reg, "outpost_log_budget_refused_appends_total", ""); got < 1 {
		t.Fatalf("refusal not counted: %v", got)
	}
	// Retention frees space; appends work again.
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2, RetentionBytes: 8 << 10}); err != nil {
		t.Fatal(err)
	}
	if l.EnforceRetention(ctx) == 0 {
		t.Fatal("retention freed nothing")
	}
	if _, err := p.Append(ctx, []elog.Record{rec(acked)}); err != nil {
		t.Fatalf("append after retention: %v", err)
	}
}

func TestDiskBudgetDeleteOldestForwardedFirst(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := elog.Config{
		SegmentMaxBytes: 8 << 10, DiskBudgetBytes: 40 << 10, BudgetPolicy: elog.BudgetDeleteOldest, Registerer: reg,
		Holders: []string{"upstream"},
	}
	l := openLog(t, t.TempDir(), cfg)
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	p0, _ := l.Partition("t", 0)
	p1, _ := l.Partition("t", 1)
	// Partition 1 is fully forwarded, partition 0 not at all.
	mustHold(t, p1, "upstream").Set(1 << 62)
	appendN(t, p0, 0, 100)
	appendN(t, p1, 0, 100)
	appendN(t, p0, 100, 300) // over budget: forwarded data (p1) goes first
	if l.Bytes() > cfg.DiskBudgetBytes {
		t.Fatalf("log holds %d bytes, budget %d", l.Bytes(), cfg.DiskBudgetBytes)
	}
	if p1.StartOffset() == 0 {
		t.Fatalf("forwarded partition kept its oldest segment")
	}
	fwd := metricValue(t, reg, "outpost_log_segments_deleted_total", "budget")
	if fwd < 1 {
		t.Fatalf("budget deletions of forwarded data not counted")
	}
	// Keep writing: eventually unforwarded data goes too, counted apart.
	appendN(t, p0, 400, 600)
	if p0.StartOffset() == 0 {
		t.Fatalf("delete-oldest never deleted unforwarded data")
	}
	if got := metricValue(t, reg, "outpost_log_segments_deleted_total", "budget_unforwarded"); got < 1 {
		t.Fatalf("unforwarded deletions not counted")
	}
}

// metricValue returns a counter's value from a registry, matching the
// reason label when one is given.
func metricValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
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
			match := reason == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestRetentionWhileReading: readers race with retention deleting the
// segments they read; they get records or ErrOffsetOutOfRange, never
// garbage, and never a closed-file error.
func TestRetentionWhileReading(t *testing.T) {
	l := openLog(t, t.TempDir(), elog.Config{SegmentMaxBytes: 4 << 10})
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1, RetentionBytes: 8 << 10}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan struct{})
	errc := make(chan error, 4)
	for r := 0; r < 3; r++ {
		go func() {
			for ctx.Err() == nil {
				from := p.StartOffset()
				recs, err := p.Read(ctx, from, 2048)
				if err != nil && !errors.Is(err, elog.ErrOffsetOutOfRange) && ctx.Err() == nil {
					errc <- err
					return
				}
				for i, r := range recs {
					if r.Offset != from+int64(i) || string(r.Value) != string(rec(int(r.Offset)).Value) {
						errc <- errors.New("reader got a wrong record")
						return
					}
				}
			}
			errc <- nil
		}()
	}
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil && i < 3000; i++ {
			if _, err := p.Append(ctx, []elog.Record{rec(i)}); err != nil {
				return
			}
			if i%50 == 0 {
				l.EnforceRetention(ctx)
			}
		}
	}()
	<-done
	cancel()
	for r := 0; r < 3; r++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if p.StartOffset() == 0 {
		t.Fatal("retention deleted nothing: the test raced with nothing")
	}
}
