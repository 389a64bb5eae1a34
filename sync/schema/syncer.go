package schema

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// MetaBucket is the metadata store bucket (edge/meta kv) of the node's
// copy: keys and values exactly as in the registry bucket.
const MetaBucket = "schemas"

// Config configures a Syncer.
type Config struct {
	// Subjects are the subjects the node's routes name.
	Subjects []string
	// Prefix is the upstream subject prefix (wire.DefaultPrefix if empty);
	// the registry bucket is wire.SchemaBucket(Prefix).
	Prefix string
	// OnUpdate receives the whole copy at Open and after every change. It
	// is called from one goroutine at a time and must not block for long.
	OnUpdate func(subjects []wire.SubjectRecord, schemas []wire.SchemaRecord)
	// RetryMin and RetryMax bound the jittered backoff between sessions
	// that failed while the link was up (no registry yet, a fetch timed
	// out); 0 means 1 s and 30 s.
	RetryMin, RetryMax time.Duration
	// Timeout bounds each request to the centre (open the bucket, fetch a
	// schema); 0 means 10 s.
	Timeout time.Duration
	// Logger receives state changes; nil discards.
	Logger *slog.Logger
	// Registerer receives outpost_schema_sync_* metrics; nil registers
	// nothing.
	Registerer prometheus.Registerer
}

// store is what the Syncer needs of the metadata store (edge/meta.Store).
type store interface {
	All(ctx context.Context, bucket string) (map[string][]byte, error)
	Apply(ctx context.Context, bucket string, puts map[string][]byte, deletes []string) error
}

// Syncer keeps the node's copy of the registry: loaded from the metadata
// store at Open, kept in step with the centre by Run whenever the uplink is
// up.
type Syncer struct {
	cfg    Config
	bucket string
	st     store
	log    *slog.Logger
	m      *metrics

	mu   sync.Mutex // guards copy; held across OnUpdate so updates stay in order
	copy nodeCopy
}

// Open loads the stored copy and hands it to OnUpdate, so checks work
// before (and without) any uplink. Unreadable stored values are logged and
// left out (the next sync rewrites them).
func Open(ctx context.Context, cfg Config, st store) (*Syncer, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = wire.DefaultPrefix
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(30*time.Second, cfg.RetryMin)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	for _, s := range cfg.Subjects {
		if err := wire.ValidateSubject(s); err != nil {
			return nil, fmt.Errorf("schema: Subjects: %w", err)
		}
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Syncer{cfg: cfg, bucket: wire.SchemaBucket(cfg.Prefix), st: st, log: lg, m: m, copy: nodeCopy{}}
	stored, err := st.All(ctx, MetaBucket)
	if err != nil {
		return nil, fmt.Errorf("schema: load the stored copy: %w", err)
	}
	for k, raw := range stored {
		e, err := decodeEntry(k, raw)
		if err != nil {
			lg.Warn("schema: a stored registry value is unreadable and left out until the next sync", "key", k, "err", err)
			continue
		}
		s.copy[k] = e
	}
	s.publishLocked()
	return s, nil
}

// publishLocked hands the copy to OnUpdate; mu must be held.
func (s *Syncer) publishLocked() {
	subjects, schemas := s.copy.records()
	s.m.subjects.Set(float64(len(subjects)))
	s.m.schemas.Set(float64(len(schemas)))
	if s.cfg.OnUpdate != nil {
		s.cfg.OnUpdate(subjects, schemas)
	}
}

// Run syncs whenever link is connected, until ctx ends; it returns nil
// then. A session watches the registry's subject records (a KV watch, not
// a poll): the first replay gives the whole registry, later entries each
// change; every change is written to the metadata store first and then
// handed to OnUpdate. A session ends when the link goes down or is
// replaced, or on an error; the next one replays the registry again, so
// a change made while the node was offline (a subject deleted, too) is
// caught up at once.
func (s *Syncer) Run(ctx context.Context, link *upstream.Link) error {
	if len(s.cfg.Subjects) == 0 {
		<-ctx.Done()
		return nil
	}
	failures := 0
	for ctx.Err() == nil {
		conn, err := link.Wait(ctx)
		if err != nil {
			return nil
		}
		err = s.session(ctx, link, conn)
		s.m.watching.Set(0)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errLinkChanged):
			failures = 0
			continue
		}
		s.m.errors.Inc()
		s.log.Warn("schema: sync with the central registry failed; retrying", "err", err, "attempt", failures+1)
		d := s.cfg.RetryMin << min(failures, 10)
		d = time.Millisecond + rand.N(min(d, s.cfg.RetryMax))
		failures++
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	return nil
}

// session watches the registry on one connection until it fails or the
// link changes.
func (s *Syncer) session(ctx context.Context, link *upstream.Link, conn *upstream.Conn) error {
	changed := link.Changed()
	if link.Conn() != conn {
		return errLinkChanged
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	kv, err := conn.JetStream().KeyValue(rctx, s.bucket)
	cancel()
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w (%s): is core running with upstream prefix %q?", ErrNoRegistry, s.bucket, s.cfg.Prefix)
	}
	if err != nil {
		return fmt.Errorf("schema: open %s: %w", s.bucket, err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := kv.Watch(wctx, wire.SchemaWatchSubjects)
	if err != nil {
		return fmt.Errorf("schema: watch %s %s: %w", s.bucket, wire.SchemaWatchSubjects, err)
	}
	defer func() { _ = w.Stop() }()
	subjects := map[string]entry{} // every subject record of the registry
	replayed := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			if link.Conn() != conn {
				return errLinkChanged
			}
			changed = link.Changed()
		case e, ok := <-w.Updates():
			if !ok {
				return errWatchClosed
			}
			if e == nil { // the replay of current values is complete
				replayed = true
				s.m.watching.Set(1)
				if err := s.apply(ctx, kv, subjects); err != nil {
					return err
				}
				s.log.Info("schema: in step with the central registry", "bucket", s.bucket, "subjects", len(subjects))
				continue
			}
			s.take(subjects, e)
			if replayed {
				if err := s.apply(ctx, kv, subjects); err != nil {
					return err
				}
			}
		}
	}
}

// take records one watched entry in subjects. A value this build cannot
// read keeps the node's current copy of that subject rather than drop it.
func (s *Syncer) take(subjects map[string]entry, e jetstream.KeyValueEntry) {
	key := e.Key()
	if e.Operation() != jetstream.KeyValuePut {
		delete(subjects, key)
		return
	}
	en, err := decodeEntry(key, e.Value())
	if err != nil {
		s.m.errors.Inc()
		s.log.Warn("schema: unreadable subject record in the registry; keeping the node's copy of it", "key", key, "err", err)
		s.mu.Lock()
		old, ok := s.copy[key]
		s.mu.Unlock()
		if ok {
			subjects[key] = old
		}
		return
	}
	subjects[key] = en
}

// apply brings the node's copy in line with subjects: fetches the schemas
// it lacks (IDs never change, so a schema once fetched is kept), writes
// the difference to the metadata store in one transaction, then hands the
// copy to OnUpdate. Nothing changes when nothing differs.
func (s *Syncer) apply(ctx context.Context, kv jetstream.KeyValue, subjects map[string]entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fetched := map[int]entry{}
	have := func(id int) (entry, bool) {
		if e, ok := fetched[id]; ok {
			return e, true
		}
		e, ok := s.copy[wire.SchemaIDKey(id)]
		return e, ok
	}
	var next nodeCopy
	for range maxReferences + 1 {
		var missing []int
		next, missing = want(s.cfg.Subjects, subjects, have)
		if len(missing) == 0 {
			break
		}
		for _, id := range missing {
			e, err := s.fetch(ctx, kv, id)
			if err != nil {
				return err
			}
			fetched[id] = e
		}
	}
	puts, deletes := diff(s.copy, next)
	if len(puts) == 0 && len(deletes) == 0 {
		return nil
	}
	if err := s.st.Apply(ctx, MetaBucket, puts, deletes); err != nil {
		return fmt.Errorf("schema: store the node's copy: %w", err)
	}
	s.copy = next
	s.m.updates.Inc()
	s.log.Info("schema: the node's copy of the registry changed", "written", len(puts), "removed", len(deletes))
	s.publishLocked()
	return nil
}

// maxReferences bounds the rounds of reference resolution (as the
// registry bounds references per schema).
const maxReferences = 100

func (s *Syncer) fetch(ctx context.Context, kv jetstream.KeyValue, id int) (entry, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	key := wire.SchemaIDKey(id)
	e, err := kv.Get(rctx, key)
	if err != nil {
		return entry{}, fmt.Errorf("schema: fetch %s: %w", key, err)
	}
	en, err := decodeEntry(key, e.Value())
	if err != nil {
		return entry{}, fmt.Errorf("schema: fetch %s: %w", key, err)
	}
	return en, nil
}
