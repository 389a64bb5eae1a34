package mqtt_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/edge/log"
)

// The tests below serve through the package's Listener, whose connections
// collect the QoS 0 publishes of one read into one append (a burst).

func qos0(r *raw, topic, payload string) []byte {
	return r.encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: []byte(payload)})
}

// waitRecords waits until topic holds n records and returns them.
func waitRecords(t *testing.T, e *env, n int) []log.Record {
	t.Helper()
	var recs []log.Record
	waitFor(t, 5*time.Second, func() error {
		recs = e.all(t, route.DefaultTopic)
		if len(recs) != n {
			return fmt.Errorf("%d of %d records", len(recs), n)
		}
		return nil
	})
	return recs
}

// QoS 0 publishes read together are appended together, yet the log keeps
// a connection's arrival order around the QoS 1 publishes among them, and
// records with their own headers (MQTT 5 properties) among shared ones.
func TestQoS0BurstKeepsArrivalOrder(t *testing.T) {
	e := newEnv(t, envOpts{listener: true, routes: route.Config{DefaultPartitions: 1}})
	c := dialRaw(t, e.addr, "gw", 5)
	const n = 300
	var wire bytes.Buffer
	var acks []uint16
	for i := 0; i < n; i++ {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: fmt.Sprintf("gw/%d", i%3), Payload: []byte(fmt.Sprint(i))}
		switch {
		case i%50 == 49:
			pk.FixedHeader.Qos = 1
			pk.PacketID = uint16(i)
			acks = append(acks, pk.PacketID)
		case i%7 == 0:
			pk.Properties.User = []packets.UserProperty{{Key: "i", Val: fmt.Sprint(i)}}
		}
		wire.Write(c.encode(pk))
	}
	c.write(wire.Bytes())
	for _, id := range acks {
		if a := c.next(5 * time.Second); a.FixedHeader.Type != packets.Puback || a.PacketID != id || a.ReasonCode != 0 {
			t.Fatalf("got %v id %d code %#x, want PUBACK %d", a.FixedHeader.Type, a.PacketID, a.ReasonCode, id)
		}
	}
	recs := waitRecords(t, e, n)
	for i, r := range recs {
		qos := "0"
		if i%50 == 49 {
			qos = "1"
		}
		if string(r.Value) != fmt.Sprint(i) || header(r, "mqtt.topic") != fmt.Sprintf("gw/%d", i%3) || header(r, "mqtt.qos") != qos || header(r, "mqtt.client_id") != "gw" {
			t.Fatalf("record %d: value %q headers %v", i, r.Value, r.Headers)
		}
		if want := fmt.Sprint(i); i%7 == 0 && i%50 != 49 && header(r, "mqtt.user.i") != want {
			t.Fatalf("record %d: user property %q, want %q", i, header(r, "mqtt.user.i"), want)
		}
		if string(r.Key) != "gw" {
			t.Fatalf("record %d: key %q", i, r.Key)
		}
	}
}

// A DISCONNECT read with QoS 0 publishes ends the connection without
// another read: the burst is appended all the same.
func TestQoS0BurstBeforeDisconnect(t *testing.T) {
	e := newEnv(t, envOpts{listener: true})
	c := dialRaw(t, e.addr, "bye", 4)
	var wire bytes.Buffer
	for i := 0; i < 100; i++ {
		wire.Write(qos0(c, "t", fmt.Sprint(i)))
	}
	wire.Write(c.encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}}))
	c.write(wire.Bytes())
	waitRecords(t, e, 100)
}

// Drain waits for QoS 0 publishes until they are in the log: a node that
// stops keeps what it has read.
func TestQoS0DrainWaitsForBurst(t *testing.T) {
	e := newEnv(t, envOpts{listener: true})
	c := dialRaw(t, e.addr, "d0", 4)
	e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	var wire bytes.Buffer
	for i := 0; i < 50; i++ {
		wire.Write(qos0(c, "t", fmt.Sprint(i)))
	}
	c.write(wire.Bytes())
	waitFor(t, 5*time.Second, func() error {
		if p := e.hook.Pending(); p != 50 {
			return fmt.Errorf("%d pending", p)
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- e.hook.Drain(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("drain returned %v with QoS 0 publishes not yet durable", err)
	case <-time.After(100 * time.Millisecond):
	}
	e.gate.open()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitRecords(t, e, 50)
}

// A burst bigger than the log takes in one append is split, not refused.
func TestQoS0BurstSplitToFitTheLog(t *testing.T) {
	e := newEnv(t, envOpts{listener: true, logCfg: func(c *log.Config) { c.MaxBatchBytes = 1024 }})
	c := dialRaw(t, e.addr, "split", 4)
	var wire bytes.Buffer
	const n = 60
	for i := 0; i < n; i++ {
		wire.Write(qos0(c, "t", fmt.Sprintf("%040d", i)))
	}
	c.write(wire.Bytes())
	recs := waitRecords(t, e, n)
	for i, r := range recs {
		if string(r.Value) != fmt.Sprintf("%040d", i) {
			t.Fatalf("record %d: %q", i, r.Value)
		}
	}
	// Still connected: nothing was refused.
	c.publish(1, 1, "t", "after", false)
	if a := c.next(5 * time.Second); a.PacketID != 1 || a.ReasonCode != 0 {
		t.Fatalf("ack %d code %#x", a.PacketID, a.ReasonCode)
	}
}
