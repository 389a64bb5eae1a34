package mqtt_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/bridge/mqtt"
	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/edge/log"
)

// seen records what a check stage saw.
type seen struct {
	mu   sync.Mutex
	pubs []mqtt.Publish
}

func (s *seen) add(p mqtt.Publish) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.Payload = append([]byte(nil), p.Payload...)
	s.pubs = append(s.pubs, p)
}

func (s *seen) all() []mqtt.Publish {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mqtt.Publish(nil), s.pubs...)
}

// An MQTT 5 publish the check stage refuses is answered with its code and
// reason, in arrival order with the acks around it, and never appended;
// a refused QoS 0 publish is dropped and counted.
func TestCheckRefuses(t *testing.T) {
	var s seen
	check := func(p mqtt.Publish) mqtt.Verdict {
		s.add(p)
		if strings.HasPrefix(string(p.Payload), "bad") {
			return mqtt.Verdict{Refuse: true, Code: 0x99, Reason: "not json"}
		}
		return mqtt.Verdict{}
	}
	bothListeners(t, envOpts{hookCfg: func(c *mqtt.Config) { c.Check = check }}, func(t *testing.T, e *env) {
		c := dialRaw(t, e.addr, "dev", 5)
		c.publish(0, 0, "s/a", "bad0", false)
		c.publish(1, 1, "s/a", "good1", false)
		c.publish(2, 1, "s/a", "bad2", false)
		c.publish(3, 1, "s/a", "good3", false)
		c.publish(4, 2, "s/a", "bad4", false)
		c.publish(0, 0, "s/a", "good5", false)
		want := []struct {
			typ  byte
			id   uint16
			code byte
		}{{packets.Puback, 1, 0}, {packets.Puback, 2, 0x99}, {packets.Puback, 3, 0}, {packets.Pubrec, 4, 0x99}}
		for _, w := range want {
			a := c.next(5 * time.Second)
			if a.FixedHeader.Type != w.typ || a.PacketID != w.id || a.ReasonCode != w.code {
				t.Fatalf("got %v id %d code %#x, want %v id %d code %#x", a.FixedHeader.Type, a.PacketID, a.ReasonCode, w.typ, w.id, w.code)
			}
			if w.code == 0x99 && a.Properties.ReasonString != "not json" {
				t.Fatalf("reason string %q", a.Properties.ReasonString)
			}
		}
		var recs []log.Record
		waitFor(t, 5*time.Second, func() error {
			if recs = e.all(t, route.DefaultTopic); len(recs) < 3 {
				return errNotYet
			}
			return nil
		})
		var got []string
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
		if strings.Join(got, ",") != "good1,good3,good5" {
			t.Fatalf("records %v, want good1,good3,good5", got)
		}
		if n := e.counter(t, "outpost_mqtt_check_refused_total", "", ""); n != 3 {
			t.Fatalf("check refused %v, want 3", n)
		}
		if n := e.counter(t, "outpost_mqtt_acks_total", "reason", "check"); n != 3 {
			t.Fatalf("acks reason=check %v, want 3", n)
		}
		p := s.all()[1]
		if p.Client != "dev" || p.Protocol != 5 || p.Topic != "s/a" || p.LogTopic != route.DefaultTopic || p.QoS != 1 || string(p.Payload) != "good1" {
			t.Fatalf("check saw %+v", p)
		}
	})
}

// A publish the check stage redirects lands in the dead-letter topic with
// the checker's headers after the MQTT ones, is acknowledged as stored
// (MQTT 3.1.1 has no negative ack), keeps its key, and is not delivered
// to local subscribers; the others go where they are routed.
func TestCheckRedirects(t *testing.T) {
	check := func(p mqtt.Publish) mqtt.Verdict {
		if strings.HasPrefix(string(p.Payload), "bad") {
			return mqtt.Verdict{RedirectTo: p.LogTopic + ".dead", Headers: []log.Header{{Key: "dead.reason", Value: []byte("not json")}}}
		}
		return mqtt.Verdict{Headers: []log.Header{{Key: "schema.id", Value: []byte("7")}}}
	}
	bothListeners(t, envOpts{hookCfg: func(c *mqtt.Config) { c.Check = check }}, func(t *testing.T, e *env) {
		if err := e.log.CreateTopic(route.DefaultTopic+".dead", log.TopicConfig{Partitions: 3}); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 10)
		sub := dialV3(t, e.addr, "sub", nil)
		tok := sub.Subscribe("r/#", 1, func(_ paho3.Client, m paho3.Message) { got <- string(m.Payload()) })
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		c := dialRaw(t, e.addr, "dev", 4)
		c.publish(1, 1, "r/a", "bad1", false)
		c.publish(0, 0, "r/a", "bad2", false)
		c.publish(0, 0, "u/nobody", "bad3", false) // the QoS 0 path without fan-out
		c.publish(2, 1, "r/a", "good", false)
		for _, id := range []uint16{1, 2} {
			if a := c.next(5 * time.Second); a.PacketID != id || a.ReasonCode != 0 {
				t.Fatalf("ack %d code %#x, want %d", a.PacketID, a.ReasonCode, id)
			}
		}
		select {
		case m := <-got:
			if m != "good" {
				t.Fatalf("subscriber got %q first, want good", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("subscriber got nothing")
		}
		var dead []log.Record
		waitFor(t, 5*time.Second, func() error {
			if dead = e.all(t, route.DefaultTopic+".dead"); len(dead) < 3 {
				return errNotYet
			}
			return nil
		})
		want := route.Partition([]byte("dev"), 3)
		for _, r := range dead {
			if header(r, "dead.reason") != "not json" || header(r, mqtt.HeaderClientID) != "dev" || string(r.Key) != "dev" {
				t.Fatalf("dead letter %q headers %v key %q", r.Value, r.Headers, r.Key)
			}
		}
		if n := len(e.records(t, route.DefaultTopic+".dead", want)); n != 3 {
			t.Fatalf("%d dead letters in partition %d of the key, want 3", n, want)
		}
		recs := e.all(t, route.DefaultTopic)
		if len(recs) != 1 || string(recs[0].Value) != "good" || header(recs[0], "schema.id") != "7" {
			t.Fatalf("routed records %v", recs)
		}
		select {
		case m := <-got:
			t.Fatalf("subscriber got %q, a dead letter", m)
		case <-time.After(100 * time.Millisecond):
		}
		if n := e.counter(t, "outpost_mqtt_check_redirected_total", "", ""); n != 3 {
			t.Fatalf("redirected %v, want 3", n)
		}
	})
}

// A redirect to a topic the log does not have refuses the publish as
// unroutable rather than losing it silently.
func TestCheckRedirectToMissingTopic(t *testing.T) {
	check := func(p mqtt.Publish) mqtt.Verdict { return mqtt.Verdict{RedirectTo: "nowhere"} }
	e := newEnv(t, envOpts{hookCfg: func(c *mqtt.Config) { c.Check = check }})
	c := dialRaw(t, e.addr, "dev", 5)
	c.publish(1, 1, "x", "p", false)
	if a := c.next(5 * time.Second); a.PacketID != 1 || a.ReasonCode != 0x80 {
		t.Fatalf("ack %d code %#x, want 0x80", a.PacketID, a.ReasonCode)
	}
	if n := e.counter(t, "outpost_mqtt_acks_total", "reason", "no_route"); n != 1 {
		t.Fatalf("no_route %v", n)
	}
	if n := len(e.all(t, route.DefaultTopic)); n != 0 {
		t.Fatalf("%d records", n)
	}
}
