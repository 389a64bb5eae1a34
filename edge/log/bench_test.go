package log_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	elog "github.com/outpost-edge/outpost/edge/log"
)

var value100 = []byte("0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789")

func benchRecord() elog.Record {
	return elog.Record{Timestamp: 1, Key: []byte("device-0001"), Value: value100}
}

func fsyncCount(b *testing.B, reg *prometheus.Registry) uint64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "outpost_log_fsync_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// runAppenders appends b.N records from n goroutines to the partitions
// given, round-robin, and returns the records per fdatasync.
func runAppenders(b *testing.B, l *elog.Log, reg *prometheus.Registry, parts []*elog.Partition, n int, perAppend int) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	recs := make([]elog.Record, perAppend)
	for i := range recs {
		recs[i] = benchRecord()
	}
	syncs0 := fsyncCount(b, reg)
	b.ResetTimer()
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := parts[g%len(parts)]
			for next.Add(int64(perAppend)) <= int64(b.N) {
				if _, err := p.Append(context.Background(), recs); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	syncs := fsyncCount(b, reg) - syncs0
	if syncs == 0 {
		return 0
	}
	return float64(b.N) / float64(syncs)
}

// frameBytesPerRecord is the on-disk cost of one bench record, so that the
// raw baseline writes the same bytes.
func frameBytesPerRecord(batch int) int {
	recs := make([]elog.Record, batch)
	for i := range recs {
		recs[i] = benchRecord()
	}
	fr, _ := elog.EncodeBatch(&elog.Batch{Records: recs})
	return len(fr) / batch
}

// BenchmarkAppendAlways compares SyncAlways group commit with its physical
// limit: one goroutine writing batches of the same size (the mean records
// per fdatasync the log achieved) to a plain file, one fdatasync each.
func BenchmarkAppendAlways(b *testing.B) {
	for _, n := range []int{1, 16, 100} {
		var batch float64
		b.Run(fmt.Sprintf("appenders=%d/log", n), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			l, err := elog.Open(b.TempDir(), elog.Config{Registerer: reg})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			l.CreateTopic("b", elog.TopicConfig{Partitions: 1})
			p, _ := l.Partition("b", 0)
			b.SetBytes(int64(frameBytesPerRecord(1)))
			b.ReportAllocs()
			batch = runAppenders(b, l, reg, []*elog.Partition{p}, n, 1)
			b.ReportMetric(batch, "recs/fsync")
		})
		b.Run(fmt.Sprintf("appenders=%d/raw", n), func(b *testing.B) {
			size := max(1, int(batch+0.5))
			per := frameBytesPerRecord(size)
			f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, per*size)
			b.SetBytes(int64(per))
			b.ResetTimer()
			for done := 0; done < b.N; done += size {
				if _, err := f.Write(buf); err != nil {
					b.Fatal(err)
				}
				if err := unix.Fdatasync(int(f.Fd())); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "recs/fsync")
		})
	}
}

// BenchmarkAppendNone measures the write path without fsync.
func BenchmarkAppendNone(b *testing.B) {
	for _, c := range []struct{ appenders, perAppend int }{{1, 1}, {16, 1}, {1, 100}} {
		b.Run(fmt.Sprintf("appenders=%d/records-per-append=%d", c.appenders, c.perAppend), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			l, err := elog.Open(b.TempDir(), elog.Config{Sync: elog.SyncNone, Registerer: reg})
			if err != nil {
				b.Fatal(err)
			}
			l.CreateTopic("b", elog.TopicConfig{Partitions: 1})
			p, _ := l.Partition("b", 0)
			b.SetBytes(int64(frameBytesPerRecord(c.perAppend)))
			b.ReportAllocs()
			runAppenders(b, l, reg, []*elog.Partition{p}, c.appenders, c.perAppend)
			l.Close() // fsync at close is outside the timing
		})
	}
}

// BenchmarkReadSequential reads a 64 MiB partition front to back.
func BenchmarkReadSequential(b *testing.B) {
	dir := b.TempDir()
	l, err := elog.Open(dir, elog.Config{Sync: elog.SyncNone})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	l.CreateTopic("b", elog.TopicConfig{Partitions: 1})
	p, _ := l.Partition("b", 0)
	recs := make([]elog.Record, 500)
	for i := range recs {
		recs[i] = benchRecord()
	}
	for p.Bytes() < 64<<20 {
		if _, err := p.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(p.Bytes())
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for off := int64(0); off < p.EndOffset(); {
			rs, err := p.Read(context.Background(), off, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			off = rs[len(rs)-1].Offset + 1
		}
	}
}

// BenchmarkOpen opens a partition of OUTPOST_BENCH_OPEN_MB (default 1024)
// MiB with a clean and with a torn tail.
func BenchmarkOpen(b *testing.B) {
	mb := 1024
	if s := os.Getenv("OUTPOST_BENCH_OPEN_MB"); s != "" {
		mb, _ = strconv.Atoi(s)
	}
	dir := b.TempDir()
	l, err := elog.Open(dir, elog.Config{Sync: elog.SyncNone})
	if err != nil {
		b.Fatal(err)
	}
	l.CreateTopic("b", elog.TopicConfig{Partitions: 1})
	p, _ := l.Partition("b", 0)
	recs := make([]elog.Record, 1000)
	for i := range recs {
		recs[i] = benchRecord()
	}
	for p.Bytes() < int64(mb)<<20 {
		if _, err := p.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	end := p.EndOffset()
	l.Close()
	active := func() string {
		m, _ := filepath.Glob(filepath.Join(dir, "b", "0", "*.log"))
		return m[len(m)-1]
	}
	for _, torn := range []bool{false, true} {
		b.Run(fmt.Sprintf("%dMiB/torn=%v", mb, torn), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if torn {
					f, _ := os.OpenFile(active(), os.O_WRONLY|os.O_APPEND, 0)
					f.Write([]byte{0x4F, 0x50, 0x42, 0x31, 0, 0, 1, 0, 9, 9, 9, 9, 1, 2, 3})
					f.Close()
				}
				b.StartTimer()
				l, err := elog.Open(dir, elog.Config{Sync: elog.SyncNone})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if p, _ := l.Partition("b", 0); p.EndOffset() != end {
					b.Fatalf("end %d after open, want %d", p.EndOffset(), end)
				}
				l.Close()
				b.StartTimer()
			}
		})
	}
}
