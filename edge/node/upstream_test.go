package node_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/node"
)

// TestForwardsUpstream: devices publish over MQTT to a node that forwards
// to a real embedded JetStream; every acknowledged message arrives exactly
// once, in offset order per partition, under the node's origin names. The
// node creates the missing stream itself (no core runs here).
func TestForwardsUpstream(t *testing.T) {
	srv := natstest.RunServer(t)
	cfg := testConfig(t)
	cfg.Upstream.URL = srv.URL()
	cfg.Upstream.Site = "farm-1"
	cfg.Upstream.Node = "pi-a"
	r := start(t, cfg, node.Options{})

	const devices, each = 3, 40
	var wg sync.WaitGroup
	for d := 0; d < devices; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", r.MQTTAddrs()[0])
			if err != nil {
				t.Error(err)
				return
			}
			c := paho.NewClient(paho.ClientConfig{Conn: conn})
			ctx := context.Background()
			id := fmt.Sprintf("dev-%d", d)
			if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}); err != nil {
				t.Error(err)
				return
			}
			defer c.Disconnect(&paho.Disconnect{})
			for i := 0; i < each; i++ {
				if _, err := c.Publish(ctx, &paho.Publish{QoS: 1, Topic: "site/" + id, Payload: []byte(fmt.Sprintf("%s:%d", id, i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	_, js := srv.Connect()
	ctx := context.Background()
	var stream jetstream.Stream
	natstest.WaitFor(t, 30*time.Second, func() error {
		s, err := js.Stream(ctx, wire.StreamName(wire.DefaultPrefix, "telemetry"))
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs < devices*each {
			return fmt.Errorf("stream holds %d of %d messages", info.State.Msgs, devices*each)
		}
		stream = s
		return nil
	})
	info, _ := stream.Info(ctx)
	if info.State.Msgs != devices*each {
		t.Fatalf("stream holds %d messages, want exactly %d", info.State.Msgs, devices*each)
	}
	next := map[int32]int64{}
	seen := map[string]bool{}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		raw, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		m, err := wire.Parse(raw.Header, raw.Data)
		if err != nil {
			t.Fatalf("parse %d: %v", seq, err)
		}
		if m.Origin.Site != "farm-1" || m.Origin.Node != "pi-a" || m.Origin.Topic != "telemetry" {
			t.Fatalf("origin %+v", m.Origin)
		}
		for _, rec := range m.Records {
			if rec.Offset != next[m.Origin.Partition] {
				t.Fatalf("partition %d: offset %d, want %d (gap, duplicate or reorder)", m.Origin.Partition, rec.Offset, next[m.Origin.Partition])
			}
			next[m.Origin.Partition]++
			v := string(rec.Value)
			if seen[v] || !strings.HasPrefix(v, "dev-") {
				t.Fatalf("value %q twice or foreign", v)
			}
			seen[v] = true
		}
	}
	if len(seen) != devices*each {
		t.Fatalf("%d distinct records upstream, want %d", len(seen), devices*each)
	}
}

// TestUpstreamOriginPinned: a data directory that forwarded as one
// site/node refuses to start under other names, naming the field.
func TestUpstreamOriginPinned(t *testing.T) {
	srv := natstest.RunServer(t)
	cfg := testConfig(t)
	cfg.Upstream.URL = srv.URL()
	cfg.Upstream.Site = "farm-1"
	r := start(t, cfg, node.Options{})
	r.stop(t)
	cfg.Upstream.Site = "farm-2"
	_, err := node.Open(context.Background(), cfg, node.Options{})
	if err == nil || !strings.Contains(err.Error(), "upstream.site") {
		t.Fatalf("reopen under another site: %v, want an error naming upstream.site", err)
	}
}
