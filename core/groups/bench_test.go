package groups

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// BenchmarkGroupVsPullConsumer reads the same stream (records of 48
// origin partitions in 16 buckets, record-per-message) with a 3-member
// group and with one plain JetStream pull consumer (no group), alternately
// in the same run, and reports both rates, their ratio, and the time the
// group takes to rebalance after a fourth member joins and after it leaves.
//
//	go test -run '^$' -bench GroupVsPull -benchtime 3x ./core/groups/
func BenchmarkGroupVsPullConsumer(b *testing.B) {
	const perOrigin = 2000
	srv := natstest.RunServer(b)
	_, js := srv.Connect()
	ctx := context.Background()
	natstest.CreateTopicStream(b, js, wire.DefaultPrefix, "telemetry", wire.TopicConfig{})
	total := 0
	for n := range 3 {
		for p := range int32(16) {
			o := wire.Origin{Site: "farm", Node: fmt.Sprintf("pi-%d", n), Topic: "telemetry", Partition: p}
			for off := range int64(perOrigin) {
				m, _ := wire.NewMsg(wire.DefaultPrefix, o, wire.Record{Offset: off, Timestamp: 1, Value: make([]byte, 100)})
				if _, err := js.PublishMsgAsync(m); err != nil {
					b.Fatal(err)
				}
				total++
			}
		}
	}
	<-js.PublishAsyncComplete()
	st, err := js.Stream(ctx, wire.StreamName(wire.DefaultPrefix, "telemetry"))
	if err != nil {
		b.Fatal(err)
	}
	var groupRates, pullRates, joins, leaves []float64
	for i := 0; i < b.N; i++ {
		// Plain pull consumer: fetch in batches, decode, count.
		cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy, InactiveThreshold: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		got := 0
		for got < total {
			batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			for m := range batch.Messages() {
				if _, err := wire.Parse(m.Headers(), m.Data()); err != nil {
					b.Fatal(err)
				}
				got++
			}
		}
		pullRates = append(pullRates, float64(total)/time.Since(start).Seconds())

		// The group: three members.
		var handled atomic.Int64
		h := func(context.Context, Record) error { handled.Add(1); return nil }
		name := fmt.Sprintf("bench%d", i)
		cfg := func(id string) Config {
			return Config{Group: name, Topic: "telemetry", Member: id, SessionTimeout: 2 * time.Second, Handler: h}
		}
		start = time.Now()
		var ms []*running
		for _, id := range []string{"a", "b", "c"} {
			ms = append(ms, startBenchMember(b, js, cfg(id)))
		}
		for handled.Load() < int64(total) {
			time.Sleep(time.Millisecond)
		}
		groupRates = append(groupRates, float64(total)/time.Since(start).Seconds())
		// Rebalance: a fourth member joins, then leaves.
		t0 := time.Now()
		d := startBenchMember(b, js, cfg("d"))
		waitBalanced(b, append(ms, d))
		joins = append(joins, time.Since(t0).Seconds())
		t0 = time.Now()
		d.cancel()
		<-d.done
		waitBalanced(b, ms)
		leaves = append(leaves, time.Since(t0).Seconds())
		for _, m := range ms {
			m.cancel()
			<-m.done
		}
	}
	med := func(xs []float64) float64 { s := append([]float64(nil), xs...); sort.Float64s(s); return s[len(s)/2] }
	b.ReportMetric(med(groupRates), "group-msg/s")
	b.ReportMetric(med(pullRates), "pull-msg/s")
	b.ReportMetric(med(groupRates)/med(pullRates), "group/pull")
	b.ReportMetric(med(joins)*1000, "join-rebalance-ms")
	b.ReportMetric(med(leaves)*1000, "leave-rebalance-ms")
	b.Logf("%d messages: group (3 members) %v msg/s, pull consumer %v msg/s; rebalance after a join %v s, after a leave %v s",
		total, groupRates, pullRates, joins, leaves)
}

func startBenchMember(b *testing.B, js jetstream.JetStream, cfg Config) *running {
	m, err := Join(context.Background(), js, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	return r
}

// waitBalanced waits until the members hold all 16 buckets, evenly.
func waitBalanced(b *testing.B, ms []*running) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		total, ok := 0, true
		for _, r := range ms {
			n := len(r.m.Assignment())
			total += n
			if n < 16/len(ms) || n > (16+len(ms)-1)/len(ms) {
				ok = false
			}
		}
		if ok && total == 16 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatal("the group did not rebalance within 30s")
}
