package meta_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/meta"
)

// BenchmarkSetCursor measures durable cursor commits: serial (one fsync
// each) against parallel callers sharing transactions through db.Batch.
func BenchmarkSetCursor(b *testing.B) {
	for _, d := range []time.Duration{time.Millisecond, 10 * time.Millisecond} {
		b.Run("serial/delay="+d.String(), func(b *testing.B) {
			s := openStore(b, filepath.Join(b.TempDir(), "meta.db"), meta.Config{BatchMaxDelay: d})
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := s.SetCursor(ctx, "upstream", "t", 0, int64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("serial-put", func(b *testing.B) {
		// A plain Update per commit, for comparison: what a lone caller
		// would pay without Batch's wait.
		s := openStore(b, filepath.Join(b.TempDir(), "meta.db"), meta.Config{})
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := s.Put(ctx, "b", "k", []byte{byte(i)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, d := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 10 * time.Millisecond} {
		b.Run("parallel/delay="+d.String(), func(b *testing.B) { benchParallel(b, d) })
	}
}

func benchParallel(b *testing.B, delay time.Duration) {
	{
		s := openStore(b, filepath.Join(b.TempDir(), "meta.db"), meta.Config{BatchMaxDelay: delay})
		var part atomic.Int32
		b.SetParallelism(16) // many forwarder loops per core
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			p := part.Add(1)
			for i := int64(0); pb.Next(); i++ {
				if err := s.SetCursor(ctx, "upstream", "t", p, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
}

// BenchmarkOpen measures Open's checks (size, full walk, tx.Check) on a
// store larger than a node should ever have: 10,000 cursors and 2,000
// cached values of 1 KiB.
func BenchmarkOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "meta.db")
	s, err := meta.Open(path, meta.Config{})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := range 1000 {
				if err := s.SetCursor(ctx, fmt.Sprintf("c%d", w), "t", int32(i), int64(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	val := make([]byte, 1024)
	for i := range 2000 {
		if err := s.Put(ctx, "schemas", fmt.Sprint(i), val); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	b.ResetTimer()
	for b.Loop() {
		s, err := meta.Open(path, meta.Config{})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
	st, _ := os.Stat(path)
	b.ReportMetric(float64(st.Size()), "file-bytes")
}
