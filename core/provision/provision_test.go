package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/provision"
	"github.com/outpost-edge/outpost/core/wire"
)

func TestEnsureConfigured(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg := provision.DefaultConfig()
	cfg.Defaults.DuplicateWindow = 5 * time.Minute
	cfg.Topics = []provision.Topic{
		{Name: "telemetry", TopicConfig: wire.TopicConfig{DuplicateWindow: 30 * time.Second, MaxAge: time.Hour, MaxBytes: 1 << 20, Discard: "new"}},
		{Name: "plant.events"},
	}
	p, err := provision.New(js, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureConfigured(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "OUTPOST_telemetry")
	if err != nil {
		t.Fatal(err)
	}
	c := st.CachedInfo().Config
	if c.Duplicates != 30*time.Second || c.MaxAge != time.Hour || c.MaxBytes != 1<<20 || c.Replicas != 1 ||
		c.Discard != jetstream.DiscardNew || c.Storage != jetstream.FileStorage || c.AllowDirect ||
		len(c.Subjects) != 1 || c.Subjects[0] != "outpost.telemetry.>" || c.Metadata[wire.MetadataTopic] != "telemetry" {
		t.Fatalf("telemetry stream config %+v", c)
	}
	st, err = js.Stream(ctx, "OUTPOST_plant~events")
	if err != nil {
		t.Fatal(err)
	}
	c = st.CachedInfo().Config
	if c.Duplicates != 5*time.Minute || c.MaxAge != 0 || c.MaxBytes != -1 || c.Discard != jetstream.DiscardOld ||
		c.Subjects[0] != "outpost.plant~events.>" {
		t.Fatalf("plant.events stream config %+v (defaults not applied)", c)
	}

	// Idempotent, and a changed config updates the stream.
	if _, res, err := p.Ensure(ctx, "telemetry"); err != nil || res != provision.Exists {
		t.Fatalf("second Ensure: %v, %v", res, err)
	}
	cfg.Topics[0].DuplicateWindow = 10 * time.Second
	p2, err := provision.New(js, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, res, err := p2.Ensure(ctx, "telemetry"); err != nil || res != provision.Updated {
		t.Fatalf("Ensure after change: %v, %v", res, err)
	}
	st, err = js.Stream(ctx, "OUTPOST_telemetry")
	if err != nil {
		t.Fatal(err)
	}
	if d := st.CachedInfo().Config.Duplicates; d != 10*time.Second {
		t.Fatalf("duplicate window after update %v", d)
	}
}

func TestEnsureRefusesForeignStream(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OUTPOST_x", Subjects: []string{"elsewhere.>"}}); err != nil {
		t.Fatal(err)
	}
	p, err := provision.New(js, provision.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Ensure(ctx, "x"); err == nil || !strings.Contains(err.Error(), "subjects") {
		t.Fatalf("err = %v, want subjects mismatch", err)
	}
}

func TestProvisionRequests(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	reg := prometheus.NewPedanticRegistry()
	cfg := provision.DefaultConfig()
	cfg.Defaults.DuplicateWindow = 45 * time.Second
	p, err := provision.New(js, cfg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := nc.QueueSubscribe(wire.ProvisionSubscription("outpost"), "core", p.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	rep, err := wire.RequestProvision(ctx, nc, "outpost", "farm", "pi", "new.topic")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Stream != "OUTPOST_new~topic" || !rep.Created || rep.Subjects != "outpost.new~topic.>" {
		t.Fatalf("reply %+v", rep)
	}
	st, err := js.Stream(ctx, rep.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.CachedInfo().Config.Duplicates; d != 45*time.Second {
		t.Fatalf("auto-provisioned duplicate window %v, want defaults", d)
	}
	rep, err = wire.RequestProvision(ctx, nc, "outpost", "farm", "pi", "new.topic")
	if err != nil || rep.Created {
		t.Fatalf("second request: %+v, %v", rep, err)
	}
	if got := counter(t, reg, "outpost_core_provision_requests_total", "created"); got != 1 {
		t.Fatalf("created counter %v", got)
	}
	if got := counter(t, reg, "outpost_core_provision_requests_total", "exists"); got != 1 {
		t.Fatalf("exists counter %v", got)
	}

	// Auto-provisioning off: unlisted topics are refused with a reason,
	// listed ones still work.
	sub.Unsubscribe()
	cfg.AutoProvision = false
	cfg.Topics = []provision.Topic{{Name: "listed"}}
	p, err = provision.New(js, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, err = nc.QueueSubscribe(wire.ProvisionSubscription("outpost"), "core", p.Handle)
	if err != nil {
		t.Fatal(err)
	}
	_, err = wire.RequestProvision(ctx, nc, "outpost", "farm", "pi", "unlisted")
	if !errors.Is(err, wire.ErrProvisionRefused) || !strings.Contains(err.Error(), "auto_provision") {
		t.Fatalf("err = %v, want refusal naming auto_provision", err)
	}
	if _, err := wire.RequestProvision(ctx, nc, "outpost", "farm", "pi", "listed"); err != nil {
		t.Fatal(err)
	}

	// Nobody listening: the error says what to do.
	sub.Unsubscribe()
	_, err = wire.RequestProvision(ctx, nc, "outpost", "farm", "pi", "listed")
	if err == nil || !strings.Contains(err.Error(), "start core") {
		t.Fatalf("err = %v, want a hint to start core", err)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	cases := map[string]struct {
		mutate func(*provision.Config)
		field  string
	}{
		"bad_prefix":   {func(c *provision.Config) { c.Prefix = "a b" }, "prefix"},
		"negative_age": {func(c *provision.Config) { c.Defaults.MaxAge = -time.Second }, "streams.defaults.max_age"},
		"dup_over_age": {func(c *provision.Config) {
			c.Topics = []provision.Topic{{Name: "t", TopicConfig: wire.TopicConfig{MaxAge: time.Second}}}
		}, "streams.topics[0].duplicate_window"},
		"bad_topic":       {func(c *provision.Config) { c.Topics = []provision.Topic{{Name: "a/b"}} }, "streams.topics[0].name"},
		"duplicate_topic": {func(c *provision.Config) { c.Topics = []provision.Topic{{Name: "a"}, {Name: "a"}} }, "streams.topics[1].name"},
		"replicas": {func(c *provision.Config) {
			c.Topics = []provision.Topic{{Name: "a", TopicConfig: wire.TopicConfig{Replicas: 7}}}
		}, "streams.topics[0].replicas"},
		"discard":          {func(c *provision.Config) { c.Defaults.Discard = "oldest" }, "streams.defaults.discard"},
		"negative_bytes":   {func(c *provision.Config) { c.Defaults.MaxBytes = -1 }, "streams.defaults.max_bytes"},
		"negative_dup_win": {func(c *provision.Config) { c.Defaults.DuplicateWindow = -1 }, "streams.defaults.duplicate_window"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := provision.DefaultConfig()
			c.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), c.field+":") {
				t.Fatalf("err = %v, want it to start with %q", err, c.field+":")
			}
		})
	}
	if err := provision.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// counter returns the value of name{result=label} in reg.
func counter(t *testing.T, reg prometheus.Gatherer, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestBucketsFixedAtCreation: a new stream gets its topic's buckets (a
// subject transform core/wire can read back); an existing listed stream
// is updated to allow atomic batches (fenced forwarding) but keeps the
// buckets it was made with when its listed shape changes — a stream made
// before buckets is not given any, and a bucketed one keeps its count —
// since moving origin partitions between buckets would break consumer
// groups' order per origin partition.
func TestBucketsFixedAtCreation(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A stream from before buckets.
	old, err := wire.StreamConfig("outpost", "old", wire.TopicConfig{})
	if err != nil {
		t.Fatal(err)
	}
	old.SubjectTransform = nil
	old.AllowAtomicPublish = false
	delete(old.Metadata, wire.MetadataBuckets)
	if _, err := js.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	cfg := provision.DefaultConfig()
	cfg.Topics = []provision.Topic{
		{Name: "old", TopicConfig: wire.TopicConfig{MaxAge: time.Hour}},
		{Name: "fresh", TopicConfig: wire.TopicConfig{Buckets: 8}},
	}
	p, err := provision.New(js, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureConfigured(ctx); err != nil {
		t.Fatal(err)
	}
	buckets := func(name string) (int, jetstream.StreamConfig) {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		c := st.CachedInfo().Config
		return wire.StreamBuckets(c), c
	}
	if n, c := buckets("OUTPOST_old"); n != 0 || c.SubjectTransform != nil || c.MaxAge != time.Hour || !c.AllowAtomicPublish {
		t.Fatalf("old stream: %d buckets, transform %v, max_age %v, allow_atomic %v; want its shape updated (atomic batches allowed) and no buckets",
			n, c.SubjectTransform, c.MaxAge, c.AllowAtomicPublish)
	}
	if n, _ := buckets("OUTPOST_fresh"); n != 8 {
		t.Fatalf("fresh stream: %d buckets, want 8", n)
	}
	// The count changes in the config: the stream keeps 8.
	cfg.Topics[1].Buckets, cfg.Topics[1].MaxAge = 32, time.Hour
	if p, err = provision.New(js, cfg, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := p.EnsureConfigured(ctx); err != nil {
		t.Fatal(err)
	}
	if n, c := buckets("OUTPOST_fresh"); n != 8 || c.MaxAge != time.Hour {
		t.Fatalf("fresh stream after a config change: %d buckets (want 8), max_age %v", n, c.MaxAge)
	}
}
