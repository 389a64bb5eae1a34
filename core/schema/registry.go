package schema

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/wire"
)

// Registry is a Confluent-compatible schema registry over one JetStream
// KV bucket. Several registries (several core instances) may share the
// bucket. Reads are served from memory; writes go to the bucket by
// compare-and-set.
type Registry struct {
	cfg    Config
	log    *slog.Logger
	js     jetstream.JetStream
	bucket string
	st     *state
	m      *metrics

	store atomic.Pointer[store] // set by Run once the bucket is open
	ready atomic.Bool           // the watcher has delivered the bucket's contents

	// requestTimeout bounds the KV work of one API request.
	requestTimeout time.Duration
}

// New returns a registry over js, with its bucket named after cfg.Prefix.
// log may be nil (discard); reg may be nil (no metrics). It starts nothing.
func New(js jetstream.JetStream, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Registry, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st := newState()
	r := &Registry{cfg: cfg, log: log, js: js, bucket: wire.SchemaBucket(cfg.Prefix), st: st, m: newMetrics(st),
		requestTimeout: 10 * time.Second}
	if reg != nil {
		for _, c := range r.m.collectors {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("schema: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Bucket is the KV bucket name.
func (r *Registry) Bucket() string { return r.bucket }

// Ready reports whether the registry has loaded the bucket and serves
// requests; until then the API answers 50001 "loading".
func (r *Registry) Ready() bool { return r.ready.Load() }

// Run opens (or creates) the bucket, retrying while NATS is away, loads
// it and follows its changes until ctx ends. It returns nil when ctx
// ends, an error only if it cannot go on (a bucket that will never open).
func (r *Registry) Run(ctx context.Context) error {
	kv, err := r.openBucket(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	r.store.Store(&store{kv: kv, st: r.st, bucket: r.bucket, m: r.m})
	backoff := 250 * time.Millisecond
	for {
		err := r.watch(ctx, kv)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("schema bucket watch ended; restarting it", "bucket", r.bucket, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// openBucket binds to the bucket or creates it. Of several cores creating
// it at once one wins and the others bind to it.
func (r *Registry) openBucket(ctx context.Context) (jetstream.KeyValue, error) {
	backoff := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		kv, err := r.js.KeyValue(actx, r.bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = r.js.CreateKeyValue(actx, jetstream.KeyValueConfig{
				Bucket:      r.bucket,
				Description: "Outpost schema registry (core/schema); layout in core/wire/schema.go",
				History:     1,
				MaxBytes:    r.cfg.MaxBytes,
				Storage:     jetstream.FileStorage,
				Replicas:    r.cfg.Replicas,
			})
			if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				kv, err = r.js.KeyValue(actx, r.bucket)
			}
			if err == nil {
				r.log.Info("schema registry bucket created", "bucket", r.bucket, "max_bytes", r.cfg.MaxBytes, "replicas", r.cfg.Replicas)
			}
		}
		cancel()
		if err == nil {
			return kv, nil
		}
		r.log.Warn("cannot open the schema registry bucket yet; retrying", "bucket", r.bucket, "err", err, "retry_in", backoff,
			"hint", "core needs JetStream API access for KV_"+r.bucket)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// watch follows the whole bucket; the first nil entry marks the end of
// the initial values, after which the registry is ready.
func (r *Registry) watch(ctx context.Context, kv jetstream.KeyValue) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				if !r.ready.Load() {
					n, ids, b := r.st.counts()
					r.log.Info("schema registry loaded", "bucket", r.bucket, "subjects", n, "schemas", ids, "bytes", b, "took", time.Since(start).Round(time.Millisecond))
				}
				r.ready.Store(true)
				continue
			}
			deleted := e.Operation() != jetstream.KeyValuePut
			if err := r.st.apply(e.Key(), e.Value(), e.Revision(), deleted); err != nil {
				r.log.Error("schema bucket holds a value this core cannot read; ignoring it", "key", e.Key(), "revision", e.Revision(), "err", err)
			}
		}
	}
}

// storeFor returns the store once the registry is ready.
func (r *Registry) storeFor() (*store, error) {
	s := r.store.Load()
	if s == nil || !r.ready.Load() {
		return nil, errorf(ErrStore, "schema registry is loading KV bucket %s from JetStream; retry shortly (core's /readyz says when it is ready)", r.bucket)
	}
	return s, nil
}

// Subjects returns the live subjects with their latest version, "name vN"
// (for core's dashboard).
func (r *Registry) Subjects() []string {
	names := r.st.subjectNames("", false, false)
	out := make([]string, 0, len(names))
	for _, name := range names {
		s := name
		if rec, ok := r.st.subject(name); ok {
			if v, ok := rec.Latest(); ok {
				s = fmt.Sprintf("%s v%d", name, v.Version)
			}
		}
		out = append(out, s)
	}
	return out
}
