package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/node"
)

// TestRetentionKeepsUnforwarded: with upstream configured, retention keeps
// every record the central stream has not acknowledged, from the moment
// the node opens (before the forwarder runs) and while the stream is
// missing, and deletes it once forwarded (G4, G5).
func TestRetentionKeepsUnforwarded(t *testing.T) {
	srv := natstest.RunServer(t)
	cfg := testConfig(t)
	cfg.Upstream.URL = srv.URL()
	cfg.Upstream.CreateStreams = false // the stream is missing until the test creates it
	cfg.Log.SegmentMaxBytes = 128 << 10
	cfg.Log.RetentionBytes = 1                // retention wants every sealed segment gone
	cfg.MQTT.Limits.MaxPayloadBytes = 1 << 10 // small enough for the small segments
	n, err := node.Open(context.Background(), cfg, node.Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	l := n.Log()
	p, err := l.Partition("telemetry", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 6000; i += 50 {
		recs := make([]log.Record, 50)
		for j := range recs {
			recs[j].Value = fmt.Appendf(nil, "record %d, with a value long enough to fill segments", i+j)
		}
		if _, err := p.Append(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	if segs := telemetrySegments(l); segs < 3 {
		t.Fatalf("%d segments; the test needs several", segs)
	}
	if d := l.EnforceRetention(ctx); d != 0 {
		t.Fatalf("retention deleted %d segments of unforwarded records before the forwarder ran", d)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 10*time.Second, func() error {
		for _, lag := range n.Forwarder().Lag() {
			if lag.Topic == "telemetry" && lag.Partition == 0 && lag.Error != "" {
				return nil
			}
		}
		return fmt.Errorf("telemetry/0 not paused yet: %+v", n.Forwarder().Lag())
	})
	if d := l.EnforceRetention(ctx); d != 0 || p.StartOffset() != 0 {
		t.Fatalf("retention deleted %d segments of unforwarded records (stream missing)", d)
	}

	_, js := srv.Connect()
	natstest.CreateTopicStream(t, js, wire.DefaultPrefix, "telemetry", wire.TopicConfig{})
	waitFor(t, 30*time.Second, func() error {
		l.EnforceRetention(ctx)
		if segs := telemetrySegments(l); segs != 1 {
			return fmt.Errorf("%d segments of telemetry/0 left (start %d, end %d); once forwarded, retention keeps only the active one",
				segs, p.StartOffset(), p.EndOffset())
		}
		return nil
	})
}

// telemetrySegments counts the segments of telemetry/0 (the node has the
// downlink's topics too).
func telemetrySegments(l *log.Log) int {
	for _, t := range l.Topics() {
		if t.Name == "telemetry" {
			return t.Partitions[0].Segments
		}
	}
	return -1
}
