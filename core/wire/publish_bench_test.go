package wire_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// BenchmarkPublish measures records/s into an embedded JetStream through
// this package's two formats, with async publish and a bounded window of
// 256 messages in flight (what a forwarder does), under both sync policies.
// b.N counts records.
func BenchmarkPublish(b *testing.B) {
	for _, sync := range []string{"always", "2m"} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("sync=%s/batch=%d", sync, batch), func(b *testing.B) {
				opts := []natstest.Option{}
				if sync == "always" {
					opts = append(opts, natstest.WithSyncAlways())
				}
				srv := natstest.RunServer(b, opts...)
				nc, _ := srv.Connect()
				js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
				if err != nil {
					b.Fatal(err)
				}
				natstest.CreateTopicStream(b, js, "outpost", "bench", wire.TopicConfig{})
				enc, err := wire.NewEncoder("outpost", wire.Origin{Site: "s", Node: "n", Topic: "bench", Partition: 0})
				if err != nil {
					b.Fatal(err)
				}
				value := make([]byte, 100)
				rec := func(off int64) wire.Record {
					return wire.Record{Offset: off, Timestamp: off, Key: []byte("device-0001"), Value: value,
						Headers: []wire.Header{{Key: "unit", Value: []byte("C")}}}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				b.SetBytes(int64(len(value)))
				b.ReportAllocs()
				b.ResetTimer()
				var msgs []*nats.Msg
				off := int64(0)
				for off < int64(b.N) {
					var m *nats.Msg
					var err error
					if batch == 1 {
						m, err = enc.Msg(rec(off))
						off++
					} else {
						n := min(int64(batch), int64(b.N)-off)
						recs := make([]wire.Record, n)
						for i := range recs {
							recs[i] = rec(off + int64(i))
						}
						m, err = enc.BatchMsg(recs)
						off += n
					}
					if err != nil {
						b.Fatal(err)
					}
					msgs = append(msgs, m)
				}
				var futures []jetstream.PubAckFuture
				for _, m := range msgs {
					f, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute))
					if err != nil {
						b.Fatal(err)
					}
					futures = append(futures, f)
				}
				select {
				case <-js.PublishAsyncComplete():
				case <-ctx.Done():
					b.Fatal("publish did not complete")
				}
				b.StopTimer()
				for _, f := range futures {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			})
		}
	}
}
