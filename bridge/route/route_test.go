package route_test

import (
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/bridge/route"
)

func TestDefaultRoute(t *testing.T) {
	r, err := route.New(route.Config{})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Route("sensors/a/temp", "dev-1", []byte(`{}`))
	if got.Topic != "telemetry" || string(got.Key) != "dev-1" {
		t.Fatalf("got %+v", got)
	}
	if got.Partition != route.Partition([]byte("dev-1"), 8) {
		t.Fatalf("partition %d", got.Partition)
	}
	if ts := r.Topics(); len(ts) != 1 || ts[0] != (route.TopicSpec{Name: "telemetry", Partitions: 8}) {
		t.Fatalf("topics %+v", ts)
	}
}

// The partition function is part of the contract: these values must never
// change (FNV-1a 32-bit mod n).
func TestPartitionStable(t *testing.T) {
	cases := []struct {
		key  string
		n    int32
		want int32
	}{
		{"", 8, int32(2166136261 % 8)},
		{"dev-1", 8, 6}, // 0x181c8e76
		{"a", 1, 0},
		{"a", 16, int32(0xe40c292c % 16)},
	}
	for _, c := range cases {
		if got := route.Partition([]byte(c.key), c.n); got != c.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
}

func TestRules(t *testing.T) {
	r, err := route.New(route.Config{Rules: []route.Rule{
		{Filter: "plant/+/line/#", Topic: "lines", Partitions: 4, Key: route.KeyTopicLevel, KeyLevel: 1},
		{Filter: "meters/#", Topic: "meters", Partitions: 2, Key: route.KeyJSONField, KeyField: "meter.id"},
		{Filter: "meters2/#", Topic: "meters", Partitions: 2, Key: route.KeyJSONField, KeyField: "n"},
		{Filter: "exact/topic", Topic: "exact", Partitions: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, topic, payload string
		wantTopic, wantKey   string
	}{
		{"topic level", "plant/p7/line/3/temp", "", "lines", "p7"},
		{"hash matches parent", "meters", `{"meter":{"id":"m-1"}}`, "meters", "m-1"},
		{"json nested", "meters/x", `{"meter":{"id":"m-2"}}`, "meters", "m-2"},
		{"json number", "meters2/x", `{"n": 42}`, "meters", "42"},
		{"json missing falls back", "meters/x", `{"other":1}`, "meters", "cl"},
		{"not json falls back", "meters/x", `garbage`, "meters", "cl"},
		{"exact", "exact/topic", "", "exact", "cl"},
		{"exact no prefix", "exact/topic/more", "", "telemetry", "cl"},
		{"plus needs a level", "plant/p7", "", "telemetry", "cl"},
		{"sys topics skip wildcards", "$SYS/x", "", "telemetry", "cl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := r.Route(c.topic, "cl", []byte(c.payload))
			if got.Topic != c.wantTopic || string(got.Key) != c.wantKey {
				t.Fatalf("Route(%q) = %s key %q, want %s key %q", c.topic, got.Topic, got.Key, c.wantTopic, c.wantKey)
			}
		})
	}
	want := []route.TopicSpec{{Name: "telemetry", Partitions: 8}, {Name: "lines", Partitions: 4}, {Name: "meters", Partitions: 2}, {Name: "exact", Partitions: 1}}
	got := r.Topics()
	if len(got) != len(want) {
		t.Fatalf("topics %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("topics %+v, want %+v", got, want)
		}
	}
}

func TestValidateNamesField(t *testing.T) {
	cases := []struct {
		name string
		cfg  route.Config
		want string
	}{
		{"bad filter", route.Config{Rules: []route.Rule{{Filter: "a/#/b", Topic: "t"}}}, "rules[0].filter"},
		{"bad topic", route.Config{Rules: []route.Rule{{Filter: "a", Topic: "a/b"}}}, "rules[0].topic"},
		{"partition clash", route.Config{Rules: []route.Rule{{Filter: "a", Topic: "telemetry", Partitions: 3}}}, "rules[0].partitions"},
		{"bad key", route.Config{Rules: []route.Rule{{Filter: "a", Topic: "t", Key: "payload"}}}, "rules[0].key"},
		{"json without field", route.Config{Rules: []route.Rule{{Filter: "a", Topic: "t", Key: route.KeyJSONField}}}, "rules[0].key_field"},
		{"default partitions", route.Config{DefaultPartitions: -1}, "default_partitions"},
		{"negative schema version", route.Config{Rules: []route.Rule{{Filter: "a", Topic: "t", SchemaSubject: "s", SchemaVersion: -1}}}, "rules[0].schema_version"},
		{"version without subject", route.Config{Rules: []route.Rule{{Filter: "a", Topic: "t", SchemaVersion: 2}}}, "rules[0].schema_version"},
		{"subject with control char", route.Config{Rules: []route.Rule{{Filter: "a", Topic: "t", SchemaSubject: "a\nb"}}}, "rules[0].schema_subject"},
		{"default version without subject", route.Config{DefaultSchemaVersion: 1}, "default_schema_version"},
		{"topic with two schemas", route.Config{Rules: []route.Rule{
			{Filter: "a", Topic: "t", SchemaSubject: "s1"}, {Filter: "b", Topic: "t", SchemaSubject: "s2"}}}, "rules[1].schema_subject"},
		{"topic with and without schema", route.Config{Rules: []route.Rule{
			{Filter: "a", Topic: "telemetry", SchemaSubject: "s1"}}}, "rules[0].schema_subject"},
		{"dead-letter partitions differ", route.Config{Rules: []route.Rule{
			{Filter: "a", Topic: "t", Partitions: 2, SchemaSubject: "s"}, {Filter: "b", Topic: "t.dead", Partitions: 3}}}, "rules[0].schema_subject"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want mention of %s", err, c.want)
			}
		})
	}
}

func TestSchemaPerTopic(t *testing.T) {
	r, err := route.New(route.Config{
		DefaultSchemaSubject: "readings-value",
		Rules: []route.Rule{
			{Filter: "plant/+/temp", Topic: "temps", Partitions: 2, SchemaSubject: "temps-value", SchemaVersion: 3},
			{Filter: "plant/+/temp2", Topic: "temps", Partitions: 2, SchemaSubject: "temps-value", SchemaVersion: 3},
			{Filter: "raw/#", Topic: "raw"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []route.TopicSpec{
		{Name: "telemetry", Partitions: 8, SchemaSubject: "readings-value"},
		{Name: "temps", Partitions: 2, SchemaSubject: "temps-value", SchemaVersion: 3},
		{Name: "raw", Partitions: 8},
	}
	got := r.Topics()
	if len(got) != len(want) {
		t.Fatalf("topics %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("topics %+v, want %+v", got, want)
		}
	}
}

// Partition's inlined FNV-1a agrees with hash/fnv on random keys.
func TestPartitionMatchesHashFNV(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	for i := 0; i < 10000; i++ {
		key := make([]byte, rng.IntN(64))
		for j := range key {
			key[j] = byte(rng.UintN(256))
		}
		n := int32(1 + rng.IntN(1000))
		h := fnv.New32a()
		h.Write(key)
		if got, want := route.Partition(key, n), int32(h.Sum32()%uint32(n)); got != want {
			t.Fatalf("seed %d: Partition(%x, %d) = %d, hash/fnv says %d", seed, key, n, got, want)
		}
	}
}
