package upstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// TestRetentionHold: the forwarder keeps each partition's unforwarded
// records in the log with a hold named after its cursor: from the saved
// cursor while it cannot resolve (the stream is missing), then at the first
// offset the stream has not acknowledged. Retention deletes only below it.
func TestRetentionHold(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	dir := t.TempDir()
	lc := log.Config{
		Sync:            log.SyncNone,
		SegmentMaxBytes: 8 << 10,
		MaxBatchBytes:   4 << 10,
		Holders:         []string{"upstream"}, // as edge/node declares it
	}
	l, err := log.Open(dir, lc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.CreateTopic("t", log.TopicConfig{Partitions: 1, RetentionBytes: 1}); err != nil {
		t.Fatal(err)
	}
	for range 60 { // small appends, small segments: retention has boundaries to cut at
		appendN(t, l, "t", 0, 10, 100)
	}
	st := openMeta(t, metaPath(dir))
	ctx := context.Background()
	if err := st.SetCursor(ctx, "upstream", "t", 0, 250); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	hold, err := p.Hold("upstream")
	if err != nil {
		t.Fatal(err)
	}
	if n := l.EnforceRetention(ctx); n != 0 {
		t.Fatalf("retention deleted %d segments before the forwarder started", n)
	}

	cfg := testConfig(srv.URL(), nil)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitPaused(t, f, reg, kindStreamMissing, 1)
	natstest.WaitFor(t, 10*time.Second, func() error {
		if o := hold.Offset(); o != 250 {
			return fmt.Errorf("hold at %d before resolve, want the cursor (250)", o)
		}
		return nil
	})
	l.EnforceRetention(ctx)
	if s := p.StartOffset(); s == 0 || s > 250 {
		t.Fatalf("start %d: retention must delete below the cursor (250) and only there", s)
	}

	createStream(t, js, "t", wire.TopicConfig{})
	waitForwarded(t, f, 20*time.Second, 1)
	natstest.WaitFor(t, 10*time.Second, func() error {
		if o := hold.Offset(); o != 600 {
			return fmt.Errorf("hold at %d with everything forwarded, want 600", o)
		}
		return nil
	})
	l.EnforceRetention(ctx)
	if got := l.Topics()[0].Partitions[0].Segments; got != 1 {
		t.Fatalf("%d segments left with everything forwarded; retention keeps only the active one", got)
	}
}
