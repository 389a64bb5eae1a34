package wire_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// TestLastOffset runs against a stream with buckets (the shape core makes)
// and one without (made before buckets existed): LookupSubject names the
// subject to ask in each.
func TestLastOffset(t *testing.T) {
	for _, bucketed := range []bool{true, false} {
		t.Run(map[bool]string{true: "buckets", false: "no_buckets"}[bucketed], func(t *testing.T) { testLastOffset(t, bucketed) })
	}
}

func testLastOffset(t *testing.T, bucketed bool) {
	srv := natstest.RunServer(t)
	nc, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sc, err := wire.StreamConfig("outpost", "telemetry", wire.TopicConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if !bucketed {
		sc.SubjectTransform = nil
		delete(sc.Metadata, wire.MetadataBuckets)
	}
	st, err := js.CreateStream(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := wire.StreamBuckets(st.CachedInfo().Config), map[bool]int{true: 16, false: 0}[bucketed]; got != want {
		t.Fatalf("StreamBuckets = %d, want %d", got, want)
	}

	p0 := wire.Origin{Site: "s", Node: "n", Topic: "telemetry", Partition: 0}
	p1 := p0
	p1.Partition = 1
	subj0, _ := wire.LookupSubject("outpost", p0, bucketed)
	subj1, _ := wire.LookupSubject("outpost", p1, bucketed)

	expect := func(subj string, wantLast int64, wantFound bool) {
		t.Helper()
		last, found, err := wire.LastOffset(ctx, st, subj)
		if err != nil {
			t.Fatal(err)
		}
		if last != wantLast || found != wantFound {
			t.Fatalf("LastOffset(%s) = %d, %v; want %d, %v", subj, last, found, wantLast, wantFound)
		}
	}
	publish := func(m *nats.Msg, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("empty_stream", func(t *testing.T) { expect(subj0, -1, false) })

	for off := int64(0); off < 5; off++ {
		publish(wire.NewMsg("outpost", p0, wire.Record{Offset: off, Value: []byte("v")}))
	}
	t.Run("after_records", func(t *testing.T) {
		expect(subj0, 4, true)
		expect(subj1, -1, false) // other partitions are separate subjects
	})

	publish(wire.NewBatchMsg("outpost", p0, []wire.Record{{Offset: 5}, {Offset: 6}, {Offset: 7}}))
	publish(wire.NewBatchMsg("outpost", p1, []wire.Record{{Offset: 0}, {Offset: 1}}))
	t.Run("after_batches", func(t *testing.T) {
		expect(subj0, 7, true)
		expect(subj1, 1, true)
	})

	t.Run("survives_restart", func(t *testing.T) {
		srv.Restart()
		natstest.WaitFor(t, 10*time.Second, func() error {
			if !nc.IsConnected() {
				return errors.New("not reconnected")
			}
			return nil
		})
		expect(subj0, 7, true)
	})

	t.Run("foreign_message", func(t *testing.T) {
		foreign := wire.Origin{Site: "s", Node: "n", Topic: "telemetry", Partition: 9}
		subj, _ := wire.Subject("outpost", foreign)
		if _, err := js.Publish(ctx, subj, []byte("not ours")); err != nil {
			t.Fatal(err)
		}
		lookup, _ := wire.LookupSubject("outpost", foreign, bucketed)
		if _, _, err := wire.LastOffset(ctx, st, lookup); !errors.Is(err, wire.ErrBadMessage) {
			t.Fatalf("err = %v, want ErrBadMessage", err)
		}
	})

	t.Run("stream_gone", func(t *testing.T) {
		if err := js.DeleteStream(ctx, st.CachedInfo().Config.Name); err != nil {
			t.Fatal(err)
		}
		_, _, err := wire.LastOffset(ctx, st, subj0)
		if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("err = %v, want stream not found", err)
		}
	})
}
