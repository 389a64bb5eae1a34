package upstream

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// Benchmarks drain a backlog of b.N records (100-byte values) from a real
// log into an embedded JetStream. Run them with a fixed count, e.g.
//
//	go test -run '^$' -bench Drain -benchtime 1000000x ./sync/upstream/
//
// Filling the log is outside the timing; the timing ends when the last
// record is acknowledged.

// BenchmarkDrain compares the forwarder with a plain nats.go async-publish
// loop over the same log (read, wire.Encoder.Msg, PublishMsgAsync with at most
// 256 pending, wait for completion) against the same kind of server. Each
// iteration of the benchmark is b.N records; the two alternate five times
// in one run (each on a fresh server and log), and the medians are reported
// with the median of the pairwise ratios, so machine noise hits both alike.
func BenchmarkDrain(b *testing.B) {
	var fw, bl, ratio []float64
	for range 5 {
		f := drainForwarder(b, ModeRecord)
		base := drainBaseline(b)
		fw, bl, ratio = append(fw, f), append(bl, base), append(ratio, f/base)
		b.Logf("N=%d forwarder %.0f records/s, baseline %.0f records/s, ratio %.2f", b.N, f, base, f/base)
	}
	b.ReportMetric(median(fw), "fwd-records/s")
	b.ReportMetric(median(bl), "baseline-records/s")
	b.ReportMetric(median(ratio), "ratio")
}

// BenchmarkDrainSyncAlways drains into a server with sync_interval: always,
// record-per-message against batch mode, alternating three times.
func BenchmarkDrainSyncAlways(b *testing.B) {
	var rec, bat, ratio []float64
	for range 3 {
		r := drainForwarder(b, ModeRecord, natstest.WithSyncAlways())
		bt := drainForwarder(b, ModeBatch, natstest.WithSyncAlways())
		rec, bat, ratio = append(rec, r), append(bat, bt), append(ratio, bt/r)
		b.Logf("N=%d record %.0f records/s, batch %.0f records/s, ratio %.1f", b.N, r, bt, bt/r)
	}
	b.ReportMetric(median(rec), "record-records/s")
	b.ReportMetric(median(bat), "batch-records/s")
	b.ReportMetric(median(ratio), "ratio")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchLog(b *testing.B) *log.Log {
	dir := b.TempDir()
	cfg := log.DefaultConfig()
	cfg.Sync = log.SyncNone
	cfg.SegmentMaxBytes = 64 << 20
	l, err := log.Open(dir, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	if err := l.CreateTopic("bench", log.TopicConfig{Partitions: 1}); err != nil {
		b.Fatal(err)
	}
	p, _ := l.Partition("bench", 0)
	val := make([]byte, 100)
	for done := 0; done < b.N; {
		k := min(b.N-done, 1000)
		recs := make([]log.Record, k)
		for i := range recs {
			recs[i] = log.Record{Timestamp: time.Now().UnixNano(), Key: []byte("dev-1"), Value: val}
		}
		if _, err := p.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
		done += k
	}
	return l
}

// drainForwarder returns the records per second the forwarder drains a
// b.N-record backlog at.
func drainForwarder(b *testing.B, mode Mode, opts ...natstest.Option) float64 {
	l := benchLog(b)
	srv := natstest.RunServer(b, opts...)
	_, js := srv.Connect()
	natstest.CreateTopicStream(b, js, wire.DefaultPrefix, "bench", wire.TopicConfig{})
	st := openMeta(b, metaPath(b.TempDir()))
	cfg := testConfig(srv.URL(), nil)
	cfg.AckTimeout = 30 * time.Second
	cfg.Mode = mode
	f, err := New(b.Context(), cfg, l, st)
	if err != nil {
		b.Fatal(err)
	}
	hold := holdOf(b, l, "bench", 0)
	start := time.Now()
	stop := runForwarder(b, f)
	natstest.WaitFor(b, 30*time.Minute, func() error {
		// The hold is the acknowledged position, and cheap (Lag reads the log).
		if hold.Offset() == int64(b.N) {
			return nil
		}
		return errNotYet
	})
	el := time.Since(start)
	stop()
	return float64(b.N) / el.Seconds()
}

// drainBaseline returns the records per second a plain async-publish loop
// drains the same backlog at.
func drainBaseline(b *testing.B) float64 {
	l := benchLog(b)
	srv := natstest.RunServer(b)
	_, _ = srv.Connect()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		b.Fatal(err)
	}
	natstest.CreateTopicStream(b, js, wire.DefaultPrefix, "bench", wire.TopicConfig{})
	p, _ := l.Partition("bench", 0)
	enc, err := wire.NewEncoder(wire.DefaultPrefix, wire.Origin{Site: testSite, Node: testNode, Topic: "bench", Partition: 0})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for off := int64(0); off < int64(b.N); {
		recs, err := p.Read(context.Background(), off, 1<<20)
		if err != nil {
			b.Fatal(err)
		}
		for i := range recs {
			m, err := enc.Msg(toWire(&recs[i]))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
		off += int64(len(recs))
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Minute):
		b.Fatal("baseline did not complete")
	}
	return float64(b.N) / time.Since(start).Seconds()
}

// BenchmarkDrainForwarderOnly runs the forwarder side of BenchmarkDrain
// alone, for profiling.
func BenchmarkDrainForwarderOnly(b *testing.B) {
	b.ReportMetric(drainForwarder(b, ModeRecord), "records/s")
}

// BenchmarkDrainBaselineOnly runs the baseline side alone.
func BenchmarkDrainBaselineOnly(b *testing.B) {
	b.ReportMetric(drainBaseline(b), "records/s")
}
