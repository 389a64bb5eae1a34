package node_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/core/natstest"
	coreschema "github.com/outpost-edge/outpost/core/schema"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/node"
)

const readingV1 = `{"type":"object","properties":{"device":{"type":"string"},"temp":{"type":"number"}},"required":["device","temp"]}`

// readingV2 is BACKWARD compatible with v1 (it asks less) and lets temp be
// a string too: a payload only v2 accepts shows which version the edge has.
const readingV2 = `{"type":"object","properties":{"device":{"type":"string"},"temp":{"type":["number","string"]}},"required":["device"]}`

// coreRegistry runs core's real registry over the server and returns its
// URL; cleanup stops it.
func coreRegistry(t *testing.T, srv *natstest.Server) string {
	t.Helper()
	_, js := srv.Connect()
	r, err := coreschema.New(js, coreschema.Config{Prefix: wire.DefaultPrefix}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	hs := httptest.NewServer(r.Handler())
	t.Cleanup(func() { hs.Close(); cancel(); <-done })
	waitFor(t, 20*time.Second, func() error {
		if !r.Ready() {
			return errors.New("registry not ready")
		}
		return nil
	})
	return hs.URL
}

func registerSchema(t *testing.T, url, subject, schema string) {
	t.Helper()
	body := fmt.Sprintf(`{"schemaType":"JSON","schema":%q}`, schema)
	resp, err := http.Post(url+"/subjects/"+subject+"/versions", "application/vnd.schemaregistry.v1+json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("register %s: %d %s", subject, resp.StatusCode, b)
	}
}

func schemaConfig(t *testing.T) node.Config {
	cfg := testConfig(t)
	cfg.Routes.Rules = []route.Rule{{Filter: "plant/+/reading", Topic: "readings", Partitions: 2, SchemaSubject: "readings-value"}}
	return cfg
}

// mqtt5Publish publishes one QoS 1 message with a real MQTT 5 client and
// returns the PUBACK's reason code and string.
func mqtt5Publish(t *testing.T, addr, id, topic, payload string, props *paho.PublishProperties) (byte, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	pr, err := c.Publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: []byte(payload), Properties: props})
	if pr == nil {
		t.Fatalf("publish: no PUBACK: %v", err)
	}
	return pr.ReasonCode, pr.Properties.ReasonString
}

// mqtt311Publish publishes one QoS 1 message with a real MQTT 3.1.1 client
// and requires its PUBACK.
func mqtt311Publish(t *testing.T, addr, id, topic, payload string) {
	t.Helper()
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).SetAutoReconnect(false)
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("3.1.1 connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("3.1.1 publish not acknowledged: %v", tok.Error())
	}
}

// records returns every record of a topic, all partitions.
func records(t *testing.T, l *log.Log, topic string) []log.Record {
	t.Helper()
	tc, err := l.TopicConfig(topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []log.Record
	for p := int32(0); p < tc.Partitions; p++ {
		part, err := l.Partition(topic, p)
		if err != nil {
			t.Fatal(err)
		}
		for from := part.StartOffset(); from < part.EndOffset(); {
			recs, err := part.Read(context.Background(), from, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, recs...)
			from = recs[len(recs)-1].Offset + 1
		}
	}
	return out
}

func hdr(r log.Record, key string) string {
	v, _ := r.Header(key)
	return string(v)
}

// The edge half of issue 12 end to end, with core's real registry on
// embedded JetStream and real MQTT clients: a violating MQTT 5 publish gets
// 0x99 and nothing is appended; a 3.1.1 one lands in <topic>.dead with
// its reason; a valid one carries its schema ID; a version registered in
// core reaches the edge within seconds; with core stopped and the node
// restarted, the checks still work.
func TestSchemaChecksEndToEnd(t *testing.T) {
	srv := natstest.RunServer(t)
	url := coreRegistry(t, srv)
	registerSchema(t, url, "readings-value", readingV1)

	cfg := schemaConfig(t)
	cfg.Upstream.URL = srv.URL()
	cfg.Upstream.Site, cfg.Upstream.Node = "farm-1", "pi-a"
	r := start(t, cfg, node.Options{})
	addr := r.MQTTAddrs()[0]
	waitFor(t, 10*time.Second, func() error {
		if code, reason := mqtt5Publish(t, addr, "probe", "plant/p1/reading", `{"device":"p1","temp":1}`, nil); code != 0 {
			return fmt.Errorf("valid reading refused: %#x %s (schema not synced yet?)", code, reason)
		}
		return nil
	})

	code, reason := mqtt5Publish(t, addr, "dev5", "plant/p1/reading", `{"device":"p1","temp":"hot"}`, nil)
	if code != 0x99 || !strings.Contains(reason, "readings-value v1") || !strings.Contains(reason, "/temp") {
		t.Fatalf("MQTT 5 violation: code %#x reason %q, want 0x99 naming the schema and /temp", code, reason)
	}
	mqtt311Publish(t, addr, "dev3", "plant/p2/reading", `{"device":"p2"}`)

	var dead []log.Record
	waitFor(t, 5*time.Second, func() error {
		if dead = records(t, r.Log(), "readings.dead"); len(dead) != 1 {
			return fmt.Errorf("%d dead letters", len(dead))
		}
		return nil
	})
	if d := dead[0]; string(d.Value) != `{"device":"p2"}` || !strings.Contains(hdr(d, "schema.error"), "missing property 'temp'") ||
		hdr(d, "schema.subject") != "readings-value" || hdr(d, "schema.version") != "1" || hdr(d, wire.RecordHeaderMQTTClientID) != "dev3" {
		t.Fatalf("dead letter %q headers %v", d.Value, d.Headers)
	}
	for _, rec := range records(t, r.Log(), "readings") {
		if strings.Contains(string(rec.Value), "hot") || hdr(rec, "schema.id") != "1" {
			t.Fatalf("readings holds %q (schema.id %q): a violation was appended or a record lacks its schema id", rec.Value, hdr(rec, "schema.id"))
		}
	}
	if got := counterValue(t, r, "outpost_schema_violations_total", map[string]string{"subject": "readings-value", "reason": "invalid", "action": "refused"}); got != 1 {
		t.Fatalf("refused violations = %v, want 1", got)
	}

	// A new version registered in core reaches the edge within seconds.
	registerSchema(t, url, "readings-value", readingV2)
	begin := time.Now()
	waitFor(t, 5*time.Second, func() error {
		if code, reason := mqtt5Publish(t, addr, "dev5", "plant/p1/reading", `{"device":"p1","temp":"hot"}`, nil); code != 0 {
			return fmt.Errorf("v2 payload refused: %#x %s", code, reason)
		}
		return nil
	})
	t.Logf("version 2 reached the edge within %v", time.Since(begin))
	// The device may name the version it wrote with (schema-id user property).
	code, reason = mqtt5Publish(t, addr, "dev5", "plant/p1/reading", `{"device":"p1","temp":"hot"}`,
		&paho.PublishProperties{User: paho.UserProperties{{Key: "schema-id", Value: "1"}}})
	if code != 0x99 || !strings.Contains(reason, "v1") {
		t.Fatalf("payload named schema 1: %#x %q, want 0x99 against v1", code, reason)
	}

	// Core stopped, node restarted: checks work from the stored copy.
	r.stop(t)
	srv.Stop()
	r2 := start(t, cfg, node.Options{})
	addr = r2.MQTTAddrs()[0]
	if code, reason := mqtt5Publish(t, addr, "dev5", "plant/p1/reading", `{"temp":1}`, nil); code != 0x99 || !strings.Contains(reason, "v2") {
		t.Fatalf("offline after restart: %#x %q, want 0x99 against v2", code, reason)
	}
	if code, reason := mqtt5Publish(t, addr, "dev5", "plant/p1/reading", `{"device":"p1","temp":"warm"}`, nil); code != 0 {
		t.Fatalf("offline after restart, valid v2 payload: %#x %q", code, reason)
	}
}

// A node that never reached core: on_unknown_schema refuse (default)
// refuses MQTT 5 and dead-letters 3.1.1; accept appends unchecked.
func TestUnknownSchemaAtStart(t *testing.T) {
	cfg := schemaConfig(t)
	r := start(t, cfg, node.Options{})
	addr := r.MQTTAddrs()[0]
	if code, reason := mqtt5Publish(t, addr, "d", "plant/p1/reading", `{"device":"p1","temp":1}`, nil); code != 0x99 || !strings.Contains(reason, "not known at this node") {
		t.Fatalf("refuse policy: %#x %q", code, reason)
	}
	mqtt311Publish(t, addr, "d3", "plant/p1/reading", `{"device":"p1","temp":1}`)
	waitFor(t, 5*time.Second, func() error {
		if n := len(records(t, r.Log(), "readings.dead")); n != 1 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	r.stop(t)

	cfg = schemaConfig(t)
	cfg.OnUnknownSchema = "accept"
	r = start(t, cfg, node.Options{})
	if code, reason := mqtt5Publish(t, r.MQTTAddrs()[0], "d", "plant/p1/reading", `not even json`, nil); code != 0 {
		t.Fatalf("accept policy: %#x %q", code, reason)
	}
	waitFor(t, 5*time.Second, func() error {
		recs := records(t, r.Log(), "readings")
		if len(recs) != 1 || hdr(recs[0], "schema.id") != "" {
			return fmt.Errorf("readings %v", recs)
		}
		return nil
	})
}

func TestOnUnknownSchemaValidated(t *testing.T) {
	cfg := schemaConfig(t)
	cfg.OnUnknownSchema = "drop"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "on_unknown_schema") {
		t.Fatalf("Validate() = %v, want on_unknown_schema named", err)
	}
}

// counterValue reads one counter series from the node's registry.
func counterValue(t *testing.T, r *running, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
