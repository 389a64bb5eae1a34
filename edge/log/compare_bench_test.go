package log_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	elog "github.com/outpost-edge/outpost/edge/log"
)

// BenchmarkAlwaysVsRaw measures SyncAlways group commit against its
// physical limit in interleaved pairs, so that a noisy disk affects both
// sides alike: each iteration appends K records with N appenders, then
// writes K records to a plain file in batches of the size the log achieved
// (one write and one fdatasync per batch), alternating which goes first.
// It reports medians: log and raw records/s, their ratio, records/fsync.
// Run with -benchtime 7x (7 pairs).
func BenchmarkAlwaysVsRaw(b *testing.B) {
	for _, c := range []struct{ appenders, k int }{{1, 1000}, {16, 6000}, {100, 20000}} {
		b.Run(fmt.Sprintf("appenders=%d", c.appenders), func(b *testing.B) {
			reg := prometheus.NewRegistry()
			dir := b.TempDir()
			l, err := elog.Open(filepath.Join(dir, "log"), elog.Config{Registerer: reg})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			l.CreateTopic("b", elog.TopicConfig{Partitions: 1})
			p, _ := l.Partition("b", 0)
			raw, err := os.OpenFile(filepath.Join(dir, "raw"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			var logRate, rawRate, ratio, perSync []float64
			batch := 1.0
			for i := 0; i < b.N; i++ {
				var lr, rr float64
				runLog := func() {
					s0 := fsyncCount(b, reg)
					t0 := time.Now()
					appendConcurrently(b, []*elog.Partition{p}, c.appenders, c.k)
					lr = float64(c.k) / time.Since(t0).Seconds()
					batch = float64(c.k) / float64(fsyncCount(b, reg)-s0)
				}
				runRaw := func() {
					size := max(1, int(batch+0.5))
					buf := make([]byte, frameBytesPerRecord(size)*size)
					t0 := time.Now()
					for done := 0; done < c.k; done += size {
						if _, err := raw.Write(buf); err != nil {
							b.Fatal(err)
						}
						if err := unix.Fdatasync(int(raw.Fd())); err != nil {
							b.Fatal(err)
						}
					}
					rr = float64(c.k) / time.Since(t0).Seconds()
				}
				if i%2 == 0 {
					runLog()
					runRaw()
				} else {
					runRaw() // uses the previous pair's batch size
					runLog()
				}
				logRate, rawRate, ratio, perSync = append(logRate, lr), append(rawRate, rr), append(ratio, lr/rr), append(perSync, batch)
			}
			b.ReportMetric(median(logRate), "log-rec/s")
			b.ReportMetric(median(rawRate), "raw-rec/s")
			b.ReportMetric(median(ratio), "log/raw")
			b.ReportMetric(median(perSync), "recs/fsync")
		})
	}
}

func appendConcurrently(b *testing.B, ps []*elog.Partition, n, k int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := ps[g%len(ps)]
			r := []elog.Record{benchRecord()}
			for next.Add(1) <= int64(k) {
				if _, err := p.Append(context.Background(), r); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkCommitDelay compares group commit with and without the adaptive
// commit delay, in alternating trials: closed-loop appenders, and one
// pipelined appender keeping 100 appends in flight (as the MQTT hook does
// for one client with a window of 100).
func BenchmarkCommitDelay(b *testing.B) {
	for _, c := range []struct {
		name      string
		appenders int
		window    int
		k         int
	}{{"appenders=1", 1, 0, 1000}, {"appenders=16", 16, 0, 6000}, {"appenders=100", 100, 0, 20000}, {"pipelined-window=100", 0, 100, 20000}} {
		b.Run(c.name, func(b *testing.B) {
			open := func(delay time.Duration) *elog.Partition {
				l, err := elog.Open(b.TempDir(), elog.Config{CommitDelayMax: delay})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { l.Close() })
				l.CreateTopic("b", elog.TopicConfig{Partitions: 1})
				p, _ := l.Partition("b", 0)
				return p
			}
			on, off := open(0), open(-1)
			run := func(p *elog.Partition) float64 {
				t0 := time.Now()
				if c.window > 0 {
					appendPipelined(b, p, c.window, c.k)
				} else {
					appendConcurrently(b, []*elog.Partition{p}, c.appenders, c.k)
				}
				return float64(c.k) / time.Since(t0).Seconds()
			}
			var rOn, rOff, ratio []float64
			for i := 0; i < b.N; i++ {
				var a, z float64
				if i%2 == 0 {
					a, z = run(on), run(off)
				} else {
					z, a = run(off), run(on)
				}
				rOn, rOff, ratio = append(rOn, a), append(rOff, z), append(ratio, a/z)
			}
			b.ReportMetric(median(rOn), "delay-rec/s")
			b.ReportMetric(median(rOff), "nodelay-rec/s")
			b.ReportMetric(median(ratio), "delay/nodelay")
		})
	}
}

// appendPipelined keeps window appends in flight from one goroutine.
func appendPipelined(b *testing.B, p *elog.Partition, window, k int) {
	sem := make(chan struct{}, window)
	var wg sync.WaitGroup
	r := []elog.Record{benchRecord()}
	for i := 0; i < k; i++ {
		sem <- struct{}{}
		wg.Add(1)
		if err := p.AppendAsync(context.Background(), r, func(_ int64, err error) {
			if err != nil {
				b.Error(err)
			}
			<-sem
			wg.Done()
		}); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
}
