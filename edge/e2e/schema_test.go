package e2e_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
	"github.com/outpost-edge/outpost/edge/node"
	"github.com/outpost-edge/outpost/firmware-sim/fleet"
	"github.com/outpost-edge/outpost/firmware-sim/payload"
	"github.com/outpost-edge/outpost/firmware-sim/verify"
	"github.com/outpost-edge/outpost/sync/schema"
)

// seedSchema writes a one-version subject into a node's stored copy of the
// registry, in the registry's own format (what sync/schema stores), so a
// node starts with it and no core.
func seedSchema(t testing.TB, dataDir, subject, text string) {
	t.Helper()
	st, err := meta.Open(filepath.Join(dataDir, "meta.db"), meta.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sub, _ := json.Marshal(wire.SubjectRecord{V: wire.SchemaFormat, Subject: subject, NextVersion: 2, Versions: []wire.SubjectVersion{{Version: 1, ID: 1}}})
	sch, _ := json.Marshal(wire.SchemaRecord{V: wire.SchemaFormat, ID: 1, Type: wire.SchemaTypeJSON, Schema: text})
	if err := st.Apply(context.Background(), schema.MetaBucket, map[string][]byte{
		wire.SchemaSubjectKey(subject): sub, wire.SchemaIDKey(1): sch,
	}, nil); err != nil {
		t.Fatal(err)
	}
}

// schemaNode starts a node whose rule for the fleet's topics names
// subject "readings-value", seeded with firmware-sim's own JSON Schema.
func schemaNode(t testing.TB, check bool) (broker, string) {
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.MQTT.Address = "127.0.0.1:0"
	cfg.HTTP.Address = "127.0.0.1:0"
	rule := route.Rule{Filter: "sensors/#", Topic: "readings", Partitions: 8}
	if check {
		rule.SchemaSubject = "readings-value"
		seedSchema(t, cfg.DataDir, "readings-value", payload.JSONSchema)
	}
	cfg.Routes.Rules = []route.Rule{rule}
	n, err := node.Open(context.Background(), cfg, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	return broker{addr: n.MQTTAddrs()[0], stop: func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	}}, cfg.DataDir
}

func readAll(t testing.TB, l *log.Log, topic string, fn func(log.Record)) {
	t.Helper()
	tc, err := l.TopicConfig(topic)
	if err != nil {
		t.Fatal(err)
	}
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
			for _, r := range recs {
				fn(r)
			}
			from = recs[len(recs)-1].Offset + 1
		}
	}
}

// TestE2ESchemaViolations runs firmware-sim's schema-violations mode
// (schema_violation_share; the -schema-violations flag) against a node
// whose rule names a subject holding firmware-sim's own JSON Schema: over
// MQTT 5 every violation is refused with 0x99; over MQTT 3.1.1 every one
// is acknowledged and lands in readings.dead; every valid reading is
// appended to readings exactly once, without a gap, and nothing else is.
func TestE2ESchemaViolations(t *testing.T) {
	for _, version := range []string{"5", "3"} {
		t.Run("mqtt"+version, func(t *testing.T) {
			b, dataDir := schemaNode(t, true)
			stopped := false
			defer func() {
				if !stopped {
					b.stop()
				}
			}()
			cfg := fleet.DefaultConfig()
			cfg.Broker = "tcp://" + b.addr
			cfg.Seed = 1
			g := fleet.DefaultGroup()
			g.Devices = 4
			g.Count = 200
			g.Rate = 0
			g.QoS = 1
			g.InFlight = 10
			g.MQTTVersion = version
			g.Payload = fleet.PayloadConfig{Format: "json", SchemaViolationShare: 0.2}
			cfg.Groups = []fleet.Group{g}
			f, err := fleet.New(cfg, nil, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			sum, err := f.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if sum.Invalid == 0 || sum.Missing != 0 {
				t.Fatalf("fleet summary %+v", sum)
			}
			wantRefused := int64(0)
			if version == "5" {
				wantRefused = sum.Invalid
			}
			if sum.Refused != wantRefused {
				t.Fatalf("refused %d, want %d (invalid sent %d; ack reasons %v)", sum.Refused, wantRefused, sum.Invalid, sum.AckReasons)
			}
			b.stop() // acknowledged means durable; read the log after the node closed it
			stopped = true
			l, err := log.Open(filepath.Join(dataDir, "log"), log.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			valid := verify.New(verify.Options{})
			readAll(t, l, "readings", func(r log.Record) {
				if err := valid.Add("", r.Value); err != nil {
					t.Fatalf("readings holds a payload that is not a valid reading: %q: %v", r.Value, err)
				}
				if v, _ := r.Header(wire.RecordHeaderSchemaID); string(v) != "1" {
					t.Fatalf("record without schema.id 1: %v", r.Headers)
				}
			})
			rep := valid.Report()
			if !rep.OK || rep.Invalid != 0 || rep.Missing != 0 || rep.Distinct != sum.Sent-sum.Invalid {
				t.Fatalf("readings: %+v; fleet sent %d valid", rep, sum.Sent-sum.Invalid)
			}
			var dead int64
			readAll(t, l, "readings.dead", func(r log.Record) {
				dead++
				if e, _ := r.Header(wire.RecordHeaderSchemaError); len(e) == 0 {
					t.Fatalf("dead letter without schema.error: %v", r.Headers)
				}
			})
			if want := sum.Invalid - wantRefused; dead != want {
				t.Fatalf("%d dead letters, want %d", dead, want)
			}
			t.Logf("MQTT %s: %d valid readings appended, %d violations refused, %d dead-lettered", version, rep.Distinct, sum.Refused, dead)
		})
	}
}
