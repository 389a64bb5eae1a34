package log_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	elog "github.com/outpost-edge/outpost/edge/log"
)

func rec(i int) elog.Record {
	return elog.Record{
		Timestamp: int64(i) * int64(time.Millisecond),
		Key:       []byte(fmt.Sprintf("k%d", i%7)),
		Value:     []byte(fmt.Sprintf("value-%08d-%s", i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")),
		Headers:   []elog.Header{{Key: "mqtt.topic", Value: []byte("sensors/a")}},
	}
}

// openLog opens a log in dir and, at cleanup, checks its invariants and
// closes it.
func openLog(tb testing.TB, dir string, cfg elog.Config) *elog.Log {
	tb.Helper()
	l, err := elog.Open(dir, cfg)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() {
		checkInvariants(tb, l)
		l.Close()
	})
	return l
}

// checkInvariants reads every partition from start to end and checks that
// offsets are contiguous.
func checkInvariants(tb testing.TB, l *elog.Log) {
	tb.Helper()
	ctx := context.Background()
	for _, ti := range l.Topics() {
		for _, pi := range ti.Partitions {
			p, err := l.Partition(ti.Name, pi.Partition)
			if err != nil {
				tb.Errorf("partition %s/%d: %v", ti.Name, pi.Partition, err)
				continue
			}
			next := p.StartOffset()
			end := p.EndOffset()
			for next < end {
				recs, err := p.Read(ctx, next, 1<<20)
				if err != nil {
					tb.Errorf("invariants: read %s/%d at %d: %v", ti.Name, pi.Partition, next, err)
					break
				}
				if len(recs) == 0 {
					tb.Errorf("invariants: read %s/%d at %d returned nothing before end %d", ti.Name, pi.Partition, next, end)
					break
				}
				for _, r := range recs {
					if r.Offset != next {
						tb.Errorf("invariants: %s/%d: offset %d where %d expected", ti.Name, pi.Partition, r.Offset, next)
						return
					}
					next++
				}
			}
		}
	}
}

func mustPartition(tb testing.TB, l *elog.Log, topic string, n int32) *elog.Partition {
	tb.Helper()
	if err := l.CreateTopic(topic, elog.TopicConfig{Partitions: max(n+1, 1)}); err != nil {
		tb.Fatal(err)
	}
	p, err := l.Partition(topic, n)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestAppendReadReopen(t *testing.T) {
	for _, sync := range []elog.SyncPolicy{elog.SyncAlways, elog.SyncInterval, elog.SyncNone} {
		t.Run(sync.String(), func(t *testing.T) {
			dir := t.TempDir()
			cfg := elog.Config{Sync: sync, SegmentMaxBytes: 8 << 10, IndexIntervalBytes: 512, MaxBatchBytes: 4 << 10}
			l, err := elog.Open(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			p := mustPartition(t, l, "t", 0)
			ctx := context.Background()
			const n = 500
			for i := 0; i < n; i++ {
				off, err := p.Append(ctx, []elog.Record{rec(i)})
				if err != nil {
					t.Fatal(err)
				}
				if off != int64(i) {
					t.Fatalf("append %d got offset %d", i, off)
				}
			}
			check := func(l *elog.Log) {
				p, err := l.Partition("t", 0)
				if err != nil {
					t.Fatal(err)
				}
				if p.EndOffset() != n {
					t.Fatalf("end %d, want %d", p.EndOffset(), n)
				}
				for _, from := range []int64{0, 1, 137, 250, 499} {
					recs, err := p.Read(ctx, from, 300)
					if err != nil {
						t.Fatal(err)
					}
					if len(recs) == 0 || recs[0].Offset != from {
						t.Fatalf("read from %d: %d recs, first %v", from, len(recs), recs)
					}
					want := rec(int(from))
					if string(recs[0].Value) != string(want.Value) || string(recs[0].Key) != string(want.Key) || recs[0].Timestamp != want.Timestamp {
						t.Fatalf("read from %d: got %q want %q", from, recs[0].Value, want.Value)
					}
					if v, _ := recs[0].Header("mqtt.topic"); string(v) != "sensors/a" {
						t.Fatalf("header lost: %q", v)
					}
				}
				off, err := p.OffsetForTime(ctx, 250*int64(time.Millisecond))
				if err != nil || off != 250 {
					t.Fatalf("OffsetForTime = %d, %v; want 250", off, err)
				}
			}
			check(l)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2 := openLog(t, dir, cfg)
			check(l2)
			if got := l2.Topics()[0].Partitions[0].Segments; got < 3 {
				t.Fatalf("expected several segments, got %d", got)
			}
		})
	}
}

func TestConcurrentAppendersAndReaders(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, elog.Config{SegmentMaxBytes: 64 << 10, IndexIntervalBytes: 1024})
	if err := l.CreateTopic("c", elog.TopicConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const writers, per = 16, 100
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, _ := l.Partition("c", int32(w%3))
			for i := 0; i < per; i++ {
				if _, err := p.Append(ctx, []elog.Record{rec(w*per + i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	// Readers follow each partition with Notify until they have seen everything.
	total := make([]int, 3)
	for part := 0; part < 3; part++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, _ := l.Partition("c", int32(part))
			want := 0
			for w := 0; w < writers; w++ {
				if w%3 == part {
					want += per
				}
			}
			next := int64(0)
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			for next < int64(want) {
				select {
				case <-p.Notify(next):
				case <-wctx.Done():
					t.Errorf("wait at %d: %v", next, wctx.Err())
					return
				}
				recs, err := p.Read(ctx, next, 4096)
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				for _, r := range recs {
					if r.Offset != next {
						t.Errorf("offset %d, want %d", r.Offset, next)
						return
					}
					next++
				}
			}
			total[part] = int(next)
		}()
	}
	wg.Wait()
	if total[0]+total[1]+total[2] != writers*per {
		t.Fatalf("readers saw %v, want %d in all", total, writers*per)
	}
}

// TestOffsetForTimeSkewedClocks: device clocks jump back and forth; the
// lookup returns the first record in log order at or after the time, across
// segments and index entries.
func TestOffsetForTimeSkewedClocks(t *testing.T) {
	l := openLog(t, t.TempDir(), elog.Config{SegmentMaxBytes: 8 << 10, IndexIntervalBytes: 512})
	p := mustPartition(t, l, "t", 0)
	ctx := context.Background()
	ts := make([]int64, 0, 400)
	for i := 0; i < 400; i++ {
		v := int64(i) * 10
		if i%50 == 7 {
			v = -1000 // a device whose clock reset
		}
		if i%97 == 3 {
			v += 100000 // and one running ahead
		}
		r := rec(i)
		r.Timestamp = v
		ts = append(ts, v)
		if _, err := p.Append(ctx, []elog.Record{r}); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range []int64{-5000, 0, 5, 1000, 2345, 3990, 100000, 103000, 1 << 40} {
		want := int64(len(ts))
		for i, v := range ts {
			if v >= target {
				want = int64(i)
				break
			}
		}
		got, err := p.OffsetForTime(ctx, target)
		if err != nil || got != want {
			t.Fatalf("OffsetForTime(%d) = %d, %v; want %d", target, got, err, want)
		}
	}
}

// TestLogReadAfterCloseSaysClosed: a closed partition says so; it must not
// claim the offset is out of range (a reader trusting that would skip).
func TestLogReadAfterCloseSaysClosed(t *testing.T) {
	l, err := elog.Open(t.TempDir(), elog.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.CreateTopic("t", elog.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	if _, err := p.Append(context.Background(), []elog.Record{{Value: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if p.StartOffset() != 0 || p.EndOffset() != 1 {
		t.Fatalf("range [%d, %d)", p.StartOffset(), p.EndOffset())
	}
	_, err = p.Read(context.Background(), 0, 100)
	if !errors.Is(err, elog.ErrClosed) {
		t.Fatalf("Read(0) of [0, 1) after Close = %v, want ErrClosed", err)
	}
}
