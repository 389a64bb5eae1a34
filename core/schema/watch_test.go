package schema

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/internal/polltest"
)

// TestEdgeWatchContract plays an edge: with core/wire alone and a nats.go
// KV watch on the subjects and the schemas (no polling, no core/schema),
// it follows what the registry registers and resolves a subject to the
// text of its latest schema, soft deletes included.
func TestEdgeWatchContract(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	r := startRegistry(t, js, Config{})
	expect(t, "POST", r.url+"/subjects/plant.temps-value/versions", sch(tempV1), 200, `{"id":1}`)

	_, edgeJS := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := edgeJS.KeyValue(ctx, wire.SchemaBucket(wire.DefaultPrefix))
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchFiltered(ctx, []string{wire.SchemaWatchSubjects, wire.SchemaWatchIDs})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()

	// The edge's copy, as it would keep it in bbolt.
	subjects := map[string]wire.SubjectRecord{}
	schemas := map[int]wire.SchemaRecord{}
	apply := func(e jetstream.KeyValueEntry) {
		kind, id, subject, err := wire.ParseSchemaKey(e.Key())
		if err != nil {
			t.Fatalf("key %s: %v", e.Key(), err)
		}
		switch kind {
		case wire.SchemaKeySubject:
			rec, err := wire.DecodeSubjectRecord(e.Value())
			if err != nil {
				t.Fatalf("subject %s: %v", e.Key(), err)
			}
			subjects[subject] = rec
		case wire.SchemaKeyID:
			rec, err := wire.DecodeSchemaRecord(e.Value())
			if err != nil {
				t.Fatalf("schema %s: %v", e.Key(), err)
			}
			schemas[id] = rec
		default:
			t.Fatalf("the filter let through %s", e.Key())
		}
	}
	latest := func(subject string) (string, error) {
		rec, ok := subjects[subject]
		if !ok {
			return "", fmt.Errorf("subject %s unknown", subject)
		}
		v, ok := rec.Latest()
		if !ok {
			return "", fmt.Errorf("subject %s has no live version", subject)
		}
		s, ok := schemas[v.ID]
		if !ok {
			return "", fmt.Errorf("schema %d unknown", v.ID)
		}
		return s.Schema, nil
	}
	drain := func(want string) {
		polltest.Until(t, 10*time.Second, func() error {
			for {
				select {
				case e := <-w.Updates():
					if e != nil {
						apply(e)
					}
					continue
				default:
				}
				break
			}
			got, err := latest("plant.temps-value")
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("latest %s, want %s", got, want)
			}
			return nil
		})
	}
	drain(tempV1)
	expect(t, "POST", r.url+"/subjects/plant.temps-value/versions", sch(tempV2), 200, `{"id":2}`)
	drain(tempV2)
	expect(t, "DELETE", r.url+"/subjects/plant.temps-value/versions/2", nil, 200, `2`)
	drain(tempV1)
}
