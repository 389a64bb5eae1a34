package mqtt_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/bridge/mqtt"
	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/edge/log"
)

func dialV5(tb testing.TB, addr, id string) *paho.Client {
	tb.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true})
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	if ca.ReasonCode != 0 {
		tb.Fatalf("connack %#x", ca.ReasonCode)
	}
	tb.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func dialV3(tb testing.TB, addr, id string, onLost func(error)) paho3.Client {
	tb.Helper()
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetProtocolVersion(4).SetAutoReconnect(false).SetCleanSession(true)
	if onLost != nil {
		o.SetConnectionLostHandler(func(_ paho3.Client, err error) { onLost(err) })
	}
	c := paho3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		tb.Fatalf("connect: %v", tok.Error())
	}
	tb.Cleanup(func() { c.Disconnect(100) })
	return c
}

// bothListeners runs f against mochi's TCP listener and the package's
// Listener, whose connections append QoS 0 publishes in bursts.
func bothListeners(t *testing.T, o envOpts, f func(t *testing.T, e *env)) {
	for _, ours := range []bool{false, true} {
		name := "mochi-listener"
		if ours {
			name = "listener"
		}
		t.Run(name, func(t *testing.T) {
			o := o
			o.listener = ours
			f(t, newEnv(t, o))
		})
	}
}

func TestIngestV5HeadersAndKeys(t *testing.T) {
	bothListeners(t, envOpts{}, testIngestV5HeadersAndKeys)
}

func testIngestV5HeadersAndKeys(t *testing.T, e *env) {
	c := dialV5(t, e.addr, "dev-5")
	ctx := context.Background()
	for qos := byte(0); qos <= 2; qos++ {
		_, err := c.Publish(ctx, &paho.Publish{
			QoS: qos, Topic: fmt.Sprintf("sensors/dev-5/q%d", qos), Payload: []byte(fmt.Sprintf(`{"qos":%d}`, qos)),
			Properties: &paho.PublishProperties{ContentType: "application/json", User: paho.UserProperties{{Key: "unit", Value: "C"}, {Key: "fw", Value: "1.2"}}},
		})
		if err != nil {
			t.Fatalf("publish qos %d: %v", qos, err)
		}
	}
	p := route.Partition([]byte("dev-5"), route.DefaultPartitions)
	var recs []log.Record
	waitFor(t, 5*time.Second, func() error {
		recs = e.records(t, route.DefaultTopic, p)
		if len(recs) < 3 {
			return fmt.Errorf("%d records", len(recs))
		}
		return nil
	})
	if len(e.all(t, route.DefaultTopic)) != 3 {
		t.Fatalf("records outside the client's partition")
	}
	for i, r := range recs {
		if string(r.Key) != "dev-5" {
			t.Errorf("record %d key %q", i, r.Key)
		}
		want := map[string]string{
			mqtt.HeaderTopic: fmt.Sprintf("sensors/dev-5/q%d", i), mqtt.HeaderClientID: "dev-5",
			mqtt.HeaderQoS: fmt.Sprint(i), mqtt.HeaderContentType: "application/json",
			"mqtt.user.unit": "C", "mqtt.user.fw": "1.2",
		}
		for k, v := range want {
			if got := header(r, k); got != v {
				t.Errorf("record %d header %s = %q, want %q", i, k, got, v)
			}
		}
		if string(r.Value) != fmt.Sprintf(`{"qos":%d}`, i) {
			t.Errorf("record %d value %q", i, r.Value)
		}
		if d := time.Since(time.Unix(0, r.Timestamp)); d < 0 || d > time.Minute {
			t.Errorf("record %d timestamp %v is not the receive time", i, time.Unix(0, r.Timestamp))
		}
	}
}

func TestIngestV311(t *testing.T) {
	bothListeners(t, envOpts{routes: route.Config{Rules: []route.Rule{
		{Filter: "site/+/m", Topic: "meters", Partitions: 2, Key: route.KeyTopicLevel, KeyLevel: 1},
	}}}, testIngestV311)
}

func testIngestV311(t *testing.T, e *env) {
	c := dialV3(t, e.addr, "dev-3", nil)
	for qos := byte(0); qos <= 2; qos++ {
		tok := c.Publish("site/s1/m", qos, false, fmt.Sprintf("v%d", qos))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish qos %d: %v", qos, tok.Error())
		}
	}
	var recs []log.Record
	waitFor(t, 5*time.Second, func() error {
		recs = e.records(t, "meters", route.Partition([]byte("s1"), 2))
		if len(recs) < 3 {
			return fmt.Errorf("%d records", len(recs))
		}
		return nil
	})
	for i, r := range recs {
		if string(r.Key) != "s1" || string(r.Value) != fmt.Sprintf("v%d", i) || header(r, mqtt.HeaderQoS) != fmt.Sprint(i) ||
			header(r, mqtt.HeaderClientID) != "dev-3" || header(r, mqtt.HeaderTopic) != "site/s1/m" {
			t.Errorf("record %d: key %q value %q headers %v", i, r.Key, r.Value, r.Headers)
		}
	}
}

// A log whose fsync is held back holds back the PUBACK.
func TestPubackWaitsForFsync(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			e := newEnv(t, envOpts{})
			c := dialRaw(t, e.addr, "dev", v)
			e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
			c.publish(1, 1, "a/b", "x", false)
			select {
			case <-e.gate.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("no fsync started")
			}
			c.none(150 * time.Millisecond)
			e.gate.open()
			ack := c.next(5 * time.Second)
			if ack.FixedHeader.Type != packets.Puback || ack.PacketID != 1 || ack.ReasonCode != 0 {
				t.Fatalf("got %v id %d code %#x", ack.FixedHeader.Type, ack.PacketID, ack.ReasonCode)
			}
		})
	}
}

// One client with 100 messages in flight shares fdatasyncs: it is not
// limited to one commit per message.
func TestPipelinedGroupCommit(t *testing.T) {
	e := newEnv(t, envOpts{routes: route.Config{DefaultPartitions: 1}})
	c := dialRaw(t, e.addr, "gw", 5)
	e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	before := e.gate.syncs.Load()
	const n = 100
	for i := 1; i <= n; i++ {
		c.publish(uint16(i), 1, "gw/x", fmt.Sprint(i), false)
	}
	waitFor(t, 5*time.Second, func() error {
		if p := e.hook.Pending(); p != n {
			return fmt.Errorf("%d pending", p)
		}
		return nil
	})
	e.gate.open()
	for i := 1; i <= n; i++ {
		ack := c.next(5 * time.Second)
		if ack.PacketID != uint16(i) || ack.ReasonCode != 0 {
			t.Fatalf("ack %d: id %d code %#x", i, ack.PacketID, ack.ReasonCode)
		}
	}
	if syncs := e.gate.syncs.Load() - before; syncs > 3 {
		t.Fatalf("%d fdatasyncs for %d pipelined messages; want group commit (<= 3)", syncs, n)
	}
	if got := len(e.all(t, route.DefaultTopic)); got != n {
		t.Fatalf("%d records", got)
	}
}

// Acks go out in arrival order even when a later publish, on another
// partition, is durable first ([MQTT-4.6.0-2]).
func TestPipelinedAcksInOrderAcrossPartitions(t *testing.T) {
	e := newEnv(t, envOpts{routes: route.Config{Rules: []route.Rule{
		{Filter: "k/+", Topic: "multi", Partitions: 4, Key: route.KeyTopicLevel, KeyLevel: 1},
	}}})
	c := dialRaw(t, e.addr, "gw", 4)
	slow := keyFor(t, "k", 4, 0)
	e.gate.hold(func(name string) bool { return strings.Contains(name, "/multi/0/") && strings.HasSuffix(name, ".log") })
	c.publish(1, 1, "k/"+slow, "first", false)
	const n = 50
	for i := 2; i <= n; i++ {
		key := keyFor(t, fmt.Sprintf("x%d-", i), 4, int32(1+i%3))
		c.publish(uint16(i), 1, "k/"+key, fmt.Sprint(i), false)
	}
	waitFor(t, 5*time.Second, func() error {
		var sum int64
		for p := int32(1); p < 4; p++ {
			part, _ := e.log.Partition("multi", p)
			sum += part.EndOffset()
		}
		if sum != n-1 {
			return fmt.Errorf("%d of %d durable", sum, n-1)
		}
		return nil
	})
	c.none(100 * time.Millisecond)
	e.gate.open()
	for i := 1; i <= n; i++ {
		ack := c.next(5 * time.Second)
		if ack.PacketID != uint16(i) {
			t.Fatalf("ack %d has id %d: out of order", i, ack.PacketID)
		}
	}
}

func TestQoS2ExactlyOnce(t *testing.T) {
	e := newEnv(t, envOpts{routes: route.Config{DefaultPartitions: 1}})
	c := dialRaw(t, e.addr, "q2", 5)
	e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	c.publish(7, 2, "t", "once", false)
	c.publish(7, 2, "t", "once", true) // retransmission while committing
	waitFor(t, 5*time.Second, func() error {
		if d := e.counter(t, "outpost_mqtt_duplicates_total", "", ""); d != 1 {
			return fmt.Errorf("%v duplicates", d)
		}
		return nil
	})
	e.gate.open()
	rec := c.next(5 * time.Second)
	if rec.FixedHeader.Type != packets.Pubrec || rec.PacketID != 7 || rec.ReasonCode != 0 {
		t.Fatalf("got %v id %d code %#x", rec.FixedHeader.Type, rec.PacketID, rec.ReasonCode)
	}
	c.publish(7, 2, "t", "once", true) // retransmission after PUBREC, before PUBREL
	if again := c.next(5 * time.Second); again.FixedHeader.Type != packets.Pubrec || again.PacketID != 7 || again.ReasonCode != 0 {
		t.Fatalf("got %v id %d code %#x, want PUBREC 0x00", again.FixedHeader.Type, again.PacketID, again.ReasonCode)
	}
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 7})
	comp := c.next(5 * time.Second)
	if comp.FixedHeader.Type != packets.Pubcomp || comp.PacketID != 7 || comp.ReasonCode != 0 {
		t.Fatalf("got %v id %d code %#x", comp.FixedHeader.Type, comp.PacketID, comp.ReasonCode)
	}
	// The id is free again: a new message with it is a new record.
	c.publish(7, 2, "t", "second", false)
	if r := c.next(5 * time.Second); r.FixedHeader.Type != packets.Pubrec || r.ReasonCode != 0 {
		t.Fatalf("got %v code %#x", r.FixedHeader.Type, r.ReasonCode)
	}
	recs := e.all(t, route.DefaultTopic)
	if len(recs) != 2 || string(recs[0].Value) != "once" || string(recs[1].Value) != "second" {
		t.Fatalf("records %v", recs)
	}
}

func TestQoS1ResendNotAppendedTwice(t *testing.T) {
	e := newEnv(t, envOpts{routes: route.Config{DefaultPartitions: 1}})
	c := dialRaw(t, e.addr, "q1", 4)
	e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	c.publish(9, 1, "t", "a", false)
	c.publish(9, 1, "t", "a", true) // resend while committing
	waitFor(t, 5*time.Second, func() error {
		if d := e.counter(t, "outpost_mqtt_duplicates_total", "", ""); d != 1 {
			return fmt.Errorf("%v duplicates", d)
		}
		return nil
	})
	e.gate.open()
	if a := c.next(5 * time.Second); a.PacketID != 9 {
		t.Fatalf("ack id %d", a.PacketID)
	}
	c.none(100 * time.Millisecond)
	// A resend whose PUBACK was lost: answered, not stored again.
	c.publish(9, 1, "t", "a", true)
	if a := c.next(5 * time.Second); a.PacketID != 9 || a.ReasonCode != 0 {
		t.Fatalf("ack id %d code %#x", a.PacketID, a.ReasonCode)
	}
	// Same id reused for a new message (no DUP flag): stored.
	c.publish(9, 1, "t", "a", false)
	if a := c.next(5 * time.Second); a.PacketID != 9 {
		t.Fatalf("ack id %d", a.PacketID)
	}
	if n := len(e.all(t, route.DefaultTopic)); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
}

func budgetEnv(t *testing.T) *env {
	return newEnv(t, envOpts{
		routes: route.Config{DefaultPartitions: 1},
		logCfg: func(c *log.Config) {
			c.SegmentMaxBytes = 8 << 10
			c.DiskBudgetBytes = 16 << 10
			c.MaxBatchBytes = 4 << 10
		},
	})
}

// The disk budget gives MQTT 5 clients PUBACK 0x97 and disconnects MQTT
// 3.1.1 clients without an ack.
func TestDiskBudgetRefusals(t *testing.T) {
	payload := strings.Repeat("x", 1000)
	t.Run("v5", func(t *testing.T) {
		e := budgetEnv(t)
		c := dialRaw(t, e.addr, "b5", 5)
		for i := 1; ; i++ {
			if i > 100 {
				t.Fatal("budget never reached")
			}
			c.publish(uint16(i), 1, "t", payload, false)
			a := c.next(5 * time.Second)
			if a.ReasonCode == 0 {
				continue
			}
			if a.ReasonCode != 0x97 || a.PacketID != uint16(i) {
				t.Fatalf("refusal id %d code %#x, want 0x97", a.PacketID, a.ReasonCode)
			}
			break
		}
		if n := e.counter(t, "outpost_mqtt_acks_total", "reason", "disk_budget"); n != 1 {
			t.Fatalf("disk_budget count %v", n)
		}
		// paho.golang surfaces it as an error with the reason code.
		pc := dialV5(t, e.addr, "b5p")
		resp, err := pc.Publish(context.Background(), &paho.Publish{QoS: 1, Topic: "t", Payload: []byte(payload)})
		if err == nil || resp == nil || resp.ReasonCode != 0x97 {
			t.Fatalf("paho: resp %+v err %v", resp, err)
		}
	})
	t.Run("v311", func(t *testing.T) {
		e := budgetEnv(t)
		c := dialRaw(t, e.addr, "b3", 4)
		for i := 1; ; i++ {
			if i > 100 {
				t.Fatal("budget never reached")
			}
			c.publish(uint16(i), 1, "t", payload, false)
			select {
			case a, ok := <-c.in:
				if !ok {
					if n := e.counter(t, "outpost_mqtt_acks_total", "reason", "disk_budget"); n != 1 {
						t.Fatalf("disk_budget count %v", n)
					}
					return
				}
				if a.PacketID != uint16(i) || a.ReasonCode != 0 {
					t.Fatalf("ack id %d code %#x", a.PacketID, a.ReasonCode)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("neither ack nor disconnect")
			}
		}
	})
}

func TestPayloadTooLarge(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			e := newEnv(t, envOpts{hookCfg: func(c *mqtt.Config) { c.MaxPayloadBytes = 100 }})
			c := dialRaw(t, e.addr, "big", v)
			c.publish(1, 1, "t", strings.Repeat("y", 101), false)
			disc, got := c.closed(5 * time.Second)
			if v == 5 && (!got || disc.ReasonCode != 0x95) {
				t.Fatalf("v5: disconnect %v code %#x", got, disc.ReasonCode)
			}
			if n := len(e.all(t, route.DefaultTopic)); n != 0 {
				t.Fatalf("%d records", n)
			}
		})
	}
}

// A publish whose commit does not finish within the ack timeout costs the
// client its connection, never a success ack.
func TestAckTimeoutDisconnects(t *testing.T) {
	e := newEnv(t, envOpts{hookCfg: func(c *mqtt.Config) { c.AckTimeout = 200 * time.Millisecond }})
	c := dialRaw(t, e.addr, "slow", 4)
	e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	c.publish(1, 1, "t", "x", false)
	c.closed(5 * time.Second)
	if n := e.counter(t, "outpost_mqtt_ack_timeout_disconnects_total", "", ""); n < 1 {
		t.Fatalf("timeouts %v", n)
	}
}

// Local subscribers receive a device's publish only once it is durable.
func TestFanoutAfterDurable(t *testing.T) {
	e := newEnv(t, envOpts{})
	got := make(chan string, 10)
	sub := dialV3(t, e.addr, "sub", nil)
	tok := sub.Subscribe("cmd/#", 1, func(_ paho3.Client, m paho3.Message) { got <- m.Topic() + "=" + string(m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c := dialRaw(t, e.addr, "pub", 5)
	e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	c.publish(1, 1, "cmd/a", "hello", false)
	select {
	case <-e.gate.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no fsync")
	}
	select {
	case m := <-got:
		t.Fatalf("subscriber got %q before the record was durable", m)
	case <-time.After(150 * time.Millisecond):
	}
	e.gate.open()
	select {
	case m := <-got:
		if m != "cmd/a=hello" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber got nothing")
	}
}

func TestDrainAcksWhatIsDurable(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := dialRaw(t, e.addr, "d", 4)
	e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	c.publish(1, 1, "t", "x", false)
	waitFor(t, 5*time.Second, func() error {
		if e.hook.Pending() != 1 {
			return errNotYet
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- e.hook.Drain(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("drain returned %v with a publish pending", err)
	case <-time.After(100 * time.Millisecond):
	}
	e.gate.open()
	if a := c.next(5 * time.Second); a.PacketID != 1 || a.ReasonCode != 0 {
		t.Fatalf("ack %d %#x", a.PacketID, a.ReasonCode)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// After the drain, new publishes are refused, not acked.
	c.publish(2, 1, "t", "late", false)
	c.closed(5 * time.Second)
}

// A QoS 1 publish still committing when its connection drops is resent by
// the client on its resumed session: it is not appended twice, and its
// PUBACK goes to the new connection.
func TestResendAfterReconnectNotAppendedTwice(t *testing.T) {
	e := newEnv(t, envOpts{routes: route.Config{DefaultPartitions: 1}})
	c := dialRawSession(t, e.addr, "persist", 4, false)
	e.gate.hold(func(name string) bool { return strings.HasSuffix(name, ".log") })
	c.publish(5, 1, "t", "survivor", false)
	select {
	case <-e.gate.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no fsync")
	}
	c.conn.Close()
	c2 := dialRawSession(t, e.addr, "persist", 4, false)
	c2.publish(5, 1, "t", "survivor", true)
	waitFor(t, 5*time.Second, func() error {
		if d := e.counter(t, "outpost_mqtt_duplicates_total", "", ""); d != 1 {
			return fmt.Errorf("%v duplicates", d)
		}
		return nil
	})
	e.gate.open()
	if a := c2.next(5 * time.Second); a.FixedHeader.Type != packets.Puback || a.PacketID != 5 || a.ReasonCode != 0 {
		t.Fatalf("got %v id %d code %#x", a.FixedHeader.Type, a.PacketID, a.ReasonCode)
	}
	if n := len(e.all(t, route.DefaultTopic)); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
}

// QoS 2 across a reconnect: the PUBREC kept in mochi's inflight map is
// resent on the resumed session, a retransmitted PUBLISH is not appended
// again, and PUBREL completes the exchange.
func TestQoS2AcrossReconnect(t *testing.T) {
	e := newEnv(t, envOpts{routes: route.Config{DefaultPartitions: 1}})
	c := dialRawSession(t, e.addr, "q2p", 4, false)
	c.publish(3, 2, "t", "once", false)
	if r := c.next(5 * time.Second); r.FixedHeader.Type != packets.Pubrec || r.PacketID != 3 {
		t.Fatalf("got %v id %d", r.FixedHeader.Type, r.PacketID)
	}
	c.conn.Close()
	c2 := dialRawSession(t, e.addr, "q2p", 4, false)
	if r := c2.next(5 * time.Second); r.FixedHeader.Type != packets.Pubrec || r.PacketID != 3 {
		t.Fatalf("resumed session: got %v id %d, want the PUBREC resent", r.FixedHeader.Type, r.PacketID)
	}
	c2.publish(3, 2, "t", "once", true) // the client did not see the PUBREC
	if r := c2.next(5 * time.Second); r.FixedHeader.Type != packets.Pubrec || r.PacketID != 3 {
		t.Fatalf("retransmission: got %v id %d", r.FixedHeader.Type, r.PacketID)
	}
	c2.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 3})
	if r := c2.next(5 * time.Second); r.FixedHeader.Type != packets.Pubcomp || r.PacketID != 3 {
		t.Fatalf("got %v id %d", r.FixedHeader.Type, r.PacketID)
	}
	if n := len(e.all(t, route.DefaultTopic)); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
}

// QoS 0 publishes to a topic nobody subscribes to skip mochi's fan-out,
// but a subscriber that arrives later gets the next ones, and a retained
// publish still reaches the retained store.
func TestQoS0FanoutFollowsSubscriptions(t *testing.T) {
	bothListeners(t, envOpts{}, testQoS0FanoutFollowsSubscriptions)
}

func testQoS0FanoutFollowsSubscriptions(t *testing.T, e *env) {
	c := dialRaw(t, e.addr, "pub", 5)
	c.publish(0, 0, "s/a", "unseen", false)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: "s/r", Payload: []byte("kept")})
	waitFor(t, 5*time.Second, func() error {
		if n := len(e.all(t, route.DefaultTopic)); n != 2 {
			return fmt.Errorf("%d records", n)
		}
		return nil
	})
	got := make(chan string, 100)
	sub := dialV3(t, e.addr, "sub", nil)
	tok := sub.Subscribe("s/#", 0, func(_ paho3.Client, m paho3.Message) { got <- m.Topic() + "=" + string(m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	next := func() string {
		t.Helper()
		select {
		case m := <-got:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("subscriber got nothing")
		}
		return ""
	}
	if m := next(); m != "s/r=kept" {
		t.Fatalf("got %q, want the retained message", m)
	}
	c.publish(0, 0, "s/a", "seen", false)
	if m := next(); m != "s/a=seen" {
		t.Fatalf("got %q", m)
	}
	// Gone again: nothing is delivered and nothing breaks.
	if tok := sub.Unsubscribe("s/#"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c.publish(0, 0, "s/a", "after", false)
	waitFor(t, 5*time.Second, func() error {
		if n := len(e.all(t, route.DefaultTopic)); n != 4 {
			return fmt.Errorf("%d records", n)
		}
		return nil
	})
	select {
	case m := <-got:
		t.Fatalf("got %q after unsubscribing", m)
	case <-time.After(100 * time.Millisecond):
	}
}

// A subscriber gets a device's QoS 0 publishes in the order it sent them,
// across several topics, and each only once it is in the log.
func TestQoS0FanoutInOrder(t *testing.T) {
	bothListeners(t, envOpts{}, testQoS0FanoutInOrder)
}

func testQoS0FanoutInOrder(t *testing.T, e *env) {
	const n = 2000
	got := make(chan string, n)
	sub := dialV3(t, e.addr, "sub", nil)
	tok := sub.Subscribe("o/+", 0, func(_ paho3.Client, m paho3.Message) { got <- string(m.Payload()) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c := dialRaw(t, e.addr, "pub", 4)
	for i := 0; i < n; i++ {
		topic := "o/x"
		if i%3 == 0 {
			topic = "q/unwatched" // no subscriber: interleaved with fanned-out ones
		}
		if i%7 == 0 {
			topic = "o/y"
		}
		c.publish(0, 0, topic, fmt.Sprint(i), false)
	}
	last := -1
	for want := 0; ; {
		select {
		case m := <-got:
			var i int
			if _, err := fmt.Sscan(m, &i); err != nil {
				t.Fatal(err)
			}
			if i <= last {
				t.Fatalf("message %d after %d", i, last)
			}
			last = i
			want++
			if i == n-1 {
				recs := e.all(t, route.DefaultTopic)
				if len(recs) != n {
					t.Fatalf("%d records once the last was delivered, want %d", len(recs), n)
				}
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("last message %d of %d", last, n)
		}
	}
}

// A publish nobody subscribes to does not go through mochi's fan-out at
// all (mochi counts what the inline client injects as received too).
func TestNoFanoutWithoutSubscribers(t *testing.T) {
	bothListeners(t, envOpts{}, func(t *testing.T, e *env) {
		c := dialRaw(t, e.addr, "pub", 4)
		for i := 0; i < 10; i++ {
			c.publish(uint16(i+1), byte(i%2), "n/a", fmt.Sprint(i), false)
		}
		for i := 0; i < 5; i++ {
			if a := c.next(5 * time.Second); a.FixedHeader.Type != packets.Puback {
				t.Fatalf("got %v", a.FixedHeader.Type)
			}
		}
		waitFor(t, 5*time.Second, func() error {
			if n := len(e.all(t, route.DefaultTopic)); n != 10 {
				return fmt.Errorf("%d records", n)
			}
			// Completed, so the fan-out was decided: an ack goes out
			// before its publish is fanned out.
			if p := e.hook.Pending(); p != 0 {
				return fmt.Errorf("%d pending", p)
			}
			return nil
		})
		if n := atomic.LoadInt64(&e.srv.Info.MessagesReceived); n != 10 {
			t.Fatalf("mochi received %d messages, want the device's 10 and no fan-out", n)
		}
		got := make(chan string, 10)
		sub := dialV3(t, e.addr, "sub", nil)
		if tok := sub.Subscribe("n/#", 1, func(_ paho3.Client, m paho3.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		c.publish(0, 0, "n/a", "q0", false)
		c.publish(11, 1, "n/a", "q1", false)
		for _, want := range []string{"q0", "q1"} {
			select {
			case m := <-got:
				if m != want {
					t.Fatalf("got %q, want %q", m, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("subscriber did not get %q", want)
			}
		}
	})
}

// A device subscribed with NoLocal does not get its own publishes back
// through the durable fan-out, but does get other devices' ones.
func TestNoLocal(t *testing.T) {
	e := newEnv(t, envOpts{})
	c := dialRaw(t, e.addr, "nl-dev", 5)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "nl/#", Qos: 1, NoLocal: true}}})
	if a := c.next(5 * time.Second); a.FixedHeader.Type != packets.Suback {
		t.Fatalf("got %v, want SUBACK", a.FixedHeader.Type)
	}
	c.publish(2, 1, "nl/own", "own", false)
	if a := c.next(5 * time.Second); a.FixedHeader.Type != packets.Puback || a.PacketID != 2 {
		t.Fatalf("got %v id %d, want PUBACK 2", a.FixedHeader.Type, a.PacketID)
	}
	other := dialRaw(t, e.addr, "nl-other", 5)
	other.publish(3, 1, "nl/other", "other", false)
	if a := other.next(5 * time.Second); a.FixedHeader.Type != packets.Puback {
		t.Fatalf("other: got %v, want PUBACK", a.FixedHeader.Type)
	}
	got := c.next(5 * time.Second)
	if got.FixedHeader.Type != packets.Publish || got.TopicName != "nl/other" {
		t.Fatalf("got %v %q (%q), want the other device's publish only", got.FixedHeader.Type, got.TopicName, got.Payload)
	}
	c.none(200 * time.Millisecond)
	if n := len(e.all(t, route.DefaultTopic)); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
}
