package mqtt_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/bridge/route"
)

// rawPublishExpiry is an MQTT 5 QoS 1 PUBLISH with a Message Expiry
// Interval in seconds.
func rawPublishExpiry(id uint16, topic, payload string, expiry uint32) packets.Packet {
	return packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		PacketID:    id,
		TopicName:   topic,
		Payload:     []byte(payload),
		Properties:  packets.Properties{MessageExpiryInterval: expiry},
	}
}

// dialV5Session connects a paho MQTT 5 client with a persistent session
// (expiry one hour); got receives the payloads of its PUBLISHes.
func dialV5Session(tb testing.TB, addr, id string, cleanStart bool, got chan<- string) *paho.Client {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			got <- string(pr.Packet.Payload)
			return true, nil
		},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hour := uint32(3600)
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: cleanStart,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &hour}})
	if err != nil || ca.ReasonCode != 0 {
		tb.Fatalf("connect: %v %v", err, ca)
	}
	tb.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func publishV5(tb testing.TB, c *paho.Client, topic, payload string, expiry uint32) {
	tb.Helper()
	p := &paho.Publish{QoS: 1, Topic: topic, Payload: []byte(payload)}
	if expiry > 0 {
		p.Properties = &paho.PublishProperties{MessageExpiry: &expiry}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r, err := c.Publish(ctx, p); err != nil || r.ReasonCode != 0 {
		tb.Fatalf("publish %s: %v %v", payload, err, r)
	}
}

// A QoS 1 message with Message Expiry Interval 1 s, queued for an offline
// persistent session, is not delivered when the session resumes after
// 3 s; one without expiry, queued with it, is. (mochi alone drops it;
// through the hook's fan-out it used to be delivered.)
func TestExpiryOfflineSession(t *testing.T) {
	e := newEnv(t, envOpts{})
	got := make(chan string, 10)
	sub := dialV5Session(t, e.addr, "sub", true, got)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "x/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := sub.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if cl, ok := e.srv.Clients.Get("sub"); !ok || !cl.Closed() {
			return errNotYet
		}
		return nil
	})
	pub := dialV5(t, e.addr, "pub")
	publishV5(t, pub, "x/a", "expires", 1)
	publishV5(t, pub, "x/a", "stays", 0)
	time.Sleep(3 * time.Second) // the expiry is the subject: it must pass
	dialV5Session(t, e.addr, "sub", false, got)
	var msgs []string
	deadline := time.After(2 * time.Second)
	for len(msgs) < 2 {
		select {
		case m := <-got:
			msgs = append(msgs, m)
			continue
		case <-deadline:
		}
		break
	}
	if strings.Join(msgs, ",") != "stays" {
		t.Fatalf("resumed session got %v, want only stays", msgs)
	}
}

// Expiry counts from receipt: a publish whose commit took longer than its
// Message Expiry Interval is stored (and acknowledged) but not delivered to
// local subscribers.
func TestExpiryBeforeFanout(t *testing.T) {
	e := newEnv(t, envOpts{})
	got := make(chan string, 10)
	dialSub := dialV5Session(t, e.addr, "sub", true, got)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := dialSub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "x/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, e.addr, "pub", 5)
	e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	pk := rawPublishExpiry(1, "x/a", "late", 1)
	c.send(pk)
	select {
	case <-e.gate.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no fsync")
	}
	time.Sleep(1100 * time.Millisecond) // the commit outlasts the expiry
	e.gate.open()
	if a := c.next(5 * time.Second); a.PacketID != 1 || a.ReasonCode != 0 {
		t.Fatalf("ack %d %#x", a.PacketID, a.ReasonCode)
	}
	c.send(rawPublishExpiry(2, "x/a", "fresh", 60))
	if a := c.next(5 * time.Second); a.PacketID != 2 || a.ReasonCode != 0 {
		t.Fatalf("ack %d %#x", a.PacketID, a.ReasonCode)
	}
	select {
	case m := <-got:
		if m != "fresh" {
			t.Fatalf("subscriber got %q, want fresh (late expired while committing)", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber got nothing")
	}
	if n := e.counter(t, "outpost_mqtt_expired_before_fanout_total", "", ""); n != 1 {
		t.Fatalf("expired before fan-out %v, want 1", n)
	}
	if n := len(e.all(t, route.DefaultTopic)); n != 2 {
		t.Fatalf("%d records, want 2 (an expired message is still stored)", n)
	}
}
