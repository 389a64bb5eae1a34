package provision_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/provision"
	"github.com/outpost-edge/outpost/core/wire"
)

func TestEnsureStatusStream(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := provision.New(js, provision.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	shape := provision.StatusStream{MaxAge: time.Hour, MaxNodes: 100, Replicas: 1}
	st, res, err := p.EnsureStatusStream(ctx, shape)
	if err != nil || res != provision.Created {
		t.Fatalf("EnsureStatusStream: %v, %v", res, err)
	}
	c := st.CachedInfo().Config
	if c.Name != "OUTPOST-STATUS" || len(c.Subjects) != 1 || c.Subjects[0] != "outpost.$status.*.*" ||
		c.MaxMsgsPerSubject != 1 || c.MaxAge != time.Hour || c.MaxMsgs != 100 || c.Storage != jetstream.FileStorage ||
		c.Discard != jetstream.DiscardOld || c.Replicas != 1 || c.PersistMode != jetstream.AsyncPersistMode ||
		c.Metadata[wire.MetadataStatusPrefix] != "outpost" || c.Metadata[wire.MetadataPrefix] != "" {
		t.Fatalf("status stream config %+v", c)
	}
	if _, res, err := p.EnsureStatusStream(ctx, shape); err != nil || res != provision.Exists {
		t.Fatalf("second EnsureStatusStream: %v, %v", res, err)
	}
	shape.MaxAge, shape.MaxNodes = 2*time.Hour, 50
	st, res, err = p.EnsureStatusStream(ctx, shape)
	if err != nil || res != provision.Updated {
		t.Fatalf("EnsureStatusStream after a config change: %v, %v", res, err)
	}
	if c := st.CachedInfo().Config; c.MaxAge != 2*time.Hour || c.MaxMsgs != 50 {
		t.Fatalf("updated status stream %+v", c)
	}
	if _, _, err := p.EnsureStatusStream(ctx, provision.StatusStream{MaxNodes: 0, Replicas: 1}); err == nil {
		t.Fatal("max nodes 0 accepted")
	}
}

// TestStatusStreamApartFromData: with topic streams and the status stream
// side by side, reports land in the status stream only (one per node) and
// records in their topic's stream only.
func TestStatusStreamApartFromData(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := provision.DefaultConfig()
	// Topic names that come close to the status stream's name or subjects.
	topics := []string{"telemetry", "STATUS", "status", "_status", ".status", "-STATUS"}
	for _, tp := range topics {
		cfg.Topics = append(cfg.Topics, provision.Topic{Name: tp})
	}
	p, err := provision.New(js, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureConfigured(ctx); err != nil {
		t.Fatal(err)
	}
	st, _, err := p.EnsureStatusStream(ctx, provision.StatusStream{MaxNodes: 10, Replicas: 1})
	if err != nil {
		t.Fatalf("status stream next to topic streams: %v", err)
	}
	for i := range 3 {
		if err := wire.PublishStatus(nc, "outpost", wire.Status{Site: "farm", Node: "pi", Time: time.Now().Add(time.Duration(i))}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tp := range topics {
		m, err := wire.NewBatchMsg("outpost", wire.Origin{Site: "farm", Node: "pi", Topic: tp}, []wire.Record{{Offset: 0}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish to %s: %v", tp, err)
		}
	}
	natstest.WaitFor(t, 10*time.Second, func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 1 || info.State.LastSeq != 3 {
			return fmt.Errorf("status stream: %d messages, last seq %d; want 1 (the last of 3 reports)", info.State.Msgs, info.State.LastSeq)
		}
		return nil
	})
	for _, tp := range topics {
		ds, err := js.Stream(ctx, wire.StreamName("outpost", tp))
		if err != nil {
			t.Fatal(err)
		}
		if n := ds.CachedInfo().State.Msgs; n != 1 {
			t.Fatalf("stream of topic %q holds %d messages, want its 1 record and no status report", tp, n)
		}
	}
}

// TestStatusStreamRefusesForeign: a stream of another shape under the
// status stream's name, or an operator's stream that already captures the
// status subjects, is an error core reports instead of a takeover.
func TestStatusStreamRefusesForeign(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := provision.New(js, provision.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	shape := provision.StatusStream{MaxNodes: 10, Replicas: 1}
	wide, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EVERYTHING", Subjects: []string{"outpost.>"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.EnsureStatusStream(ctx, shape); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("err = %v, want the server's subjects-overlap error", err)
	}
	if err := js.DeleteStream(ctx, wide.CachedInfo().Config.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OUTPOST-STATUS", Subjects: []string{"elsewhere.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.EnsureStatusStream(ctx, shape); err == nil || !strings.Contains(err.Error(), "subjects") {
		t.Fatalf("err = %v, want subjects mismatch", err)
	}
}

// BenchmarkStatusStreamWrites: status reports from 1000 nodes into the
// status stream on a server with sync_interval: always, the way edges send
// them (plain publish); default persist mode (an fsync per report) against
// the async mode core uses for a one-replica status stream.
func BenchmarkStatusStreamWrites(b *testing.B) {
	for _, mode := range []jetstream.PersistModeType{jetstream.DefaultPersistMode, jetstream.AsyncPersistMode} {
		b.Run(mode.String(), func(b *testing.B) {
			srv := natstest.RunServer(b, natstest.WithSyncAlways())
			nc, js := srv.Connect()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			sc, err := provision.StatusStreamConfig("outpost", provision.StatusStream{MaxNodes: 1000, Replicas: 1})
			if err != nil {
				b.Fatal(err)
			}
			sc.PersistMode = mode
			st, err := js.CreateStream(ctx, sc)
			if err != nil {
				b.Fatal(err)
			}
			body, err := wire.EncodeStatus(wire.Status{Version: 1, Site: "farm", Node: "pi", Time: time.Now(),
				Partitions: []wire.PartitionStatus{{Topic: "telemetry", EndOffset: 100, ForwardedOffset: 90, LagRecords: 10}}})
			if err != nil {
				b.Fatal(err)
			}
			subjects := make([]string, 1000)
			for i := range subjects {
				subjects[i] = wire.StatusSubject("outpost", "farm", fmt.Sprintf("pi-%d", i))
			}
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for i := range b.N {
				if err := nc.Publish(subjects[i%len(subjects)], body); err != nil {
					b.Fatal(err)
				}
			}
			for {
				info, err := st.Info(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if info.State.LastSeq >= uint64(b.N) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reports/s")
		})
	}
}
