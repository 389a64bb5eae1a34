package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/backoff"
	"github.com/outpost-edge/outpost/internal/netaddr"
)

// partitionScanInterval is how often the forwarder looks for topics created
// after it started.
const partitionScanInterval = time.Second

// Forwarder drains every partition of a log to JetStream. Create it with
// New, run it with Run.
type Forwarder struct {
	cfg     Config
	log     *slog.Logger
	src     lister
	store   metaStore
	m       *metrics
	sched   *scheduler
	backoff backoff.Backoff // between retries of a paused partition
	link    *Link
	ownLink bool // made by New from Config.URL: Run runs it
	running atomic.Bool

	mu    sync.Mutex
	parts map[partKey]*partition
}

// New returns a Forwarder for lg's partitions, keeping its cursors, saved
// resends and origin in store (an *meta.Store). It pins the origin: if the
// cursors named Config.CursorName were made under another Site or Node, it
// returns an error wrapping ErrOriginChanged, since forwarding under the
// new names would send every record again. It starts nothing; Run does.
func New(ctx context.Context, cfg Config, lg *log.Log, store metaStore) (*Forwarder, error) {
	if lg == nil {
		return nil, errors.New("upstream: New: log is nil")
	}
	return newForwarder(ctx, cfg, logLister{lg}, store)
}

func newForwarder(ctx context.Context, cfg Config, src lister, store metaStore) (*Forwarder, error) {
	if store == nil {
		return nil, errors.New("upstream: New: cursor store is nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := pinOrigin(ctx, store, cfg.CursorName, cfg.Site, cfg.Node); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f := &Forwarder{
		cfg:     cfg,
		log:     lg.With("component", "upstream"),
		src:     src,
		store:   store,
		sched:   newScheduler(cfg.BandwidthBytesPerSec, cfg.MaxInflightBytes, cfg.Budget),
		backoff: backoff.Backoff{Min: cfg.ReconnectMin, Max: cfg.ReconnectMax},
		link:    cfg.Link,
		parts:   make(map[partKey]*partition),
	}
	if f.link == nil {
		ln, err := NewLink(LinkConfig{
			URL: cfg.URL, CredsFile: cfg.CredsFile, TLS: cfg.TLS,
			Name:         fmt.Sprintf("outpost-upstream %s/%s", cfg.Site, cfg.Node),
			ReconnectMin: cfg.ReconnectMin, ReconnectMax: cfg.ReconnectMax, Timeout: cfg.AckTimeout,
			Logger: f.log, Registerer: cfg.Registerer,
		})
		if err != nil {
			return nil, err
		}
		f.link, f.ownLink = ln, true
	}
	m, err := newMetrics(f, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	f.m = m
	return f, nil
}

// Run forwards until ctx ends, then commits the cursors and, if the
// forwarder made its own link, closes the connection. It survives every
// upstream failure (server down, wrong credentials, missing or full
// streams, permissions): those pause forwarding, are logged once per
// change and counted, and forwarding resumes when they are fixed. It
// returns nil when ctx ends, or an error if Run is already running.
func (f *Forwarder) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("upstream: Run: already running")
	}
	defer f.running.Store(false)
	f.log.Info("upstream: forwarding", "url", netaddr.RedactURL(f.link.cfg.URL), "site", f.cfg.Site, "node", f.cfg.Node,
		"mode", f.cfg.Mode.String(), "window", f.cfg.Window, "bandwidth_bytes_per_sec", f.cfg.BandwidthBytesPerSec)

	// The link outlives the loops: they stop first, so nothing they do
	// at the end sees the connection closed under it.
	linkCtx, stopLink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLink()
	var conns, loops sync.WaitGroup
	if f.ownLink {
		conns.Go(func() { _ = f.link.Run(linkCtx) })
	}
	loops.Go(func() { f.scanLoop(ctx, &loops) })
	loops.Go(func() { f.statusLoop(ctx) })
	loops.Go(func() { f.cursorLoop(ctx) })
	<-ctx.Done()
	loops.Wait()
	// Loops are done: commit what they got acknowledged, so a restart does
	// not depend on the stream being reachable to know where it was.
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	f.commitCursors(cctx)
	cancel()
	if f.cfg.ReleaseHolds {
		// A takeover ends: the replica's retention is its follower's again.
		// The partitions are made afresh (with new holds) by the next Run.
		f.mu.Lock()
		for k, p := range f.parts {
			if p.hold != nil {
				p.hold.Release()
			}
			delete(f.parts, k)
		}
		f.mu.Unlock()
	}
	stopLink()
	conns.Wait()
	return nil
}

// scanLoop starts a goroutine (owned by wg) for every partition of the
// log, and looks again every partitionScanInterval for new ones.
func (f *Forwarder) scanLoop(ctx context.Context, wg *sync.WaitGroup) {
	t := time.NewTicker(partitionScanInterval)
	defer t.Stop()
	for {
		for _, k := range f.src.partitions() {
			p := f.partition(ctx, k)
			if p == nil {
				continue
			}
			f.mu.Lock()
			start := !p.running
			p.running = true
			f.mu.Unlock()
			if start {
				wg.Go(func() {
					defer func() {
						f.mu.Lock()
						p.running = false
						f.mu.Unlock()
					}()
					p.run(ctx)
				})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// partition returns the partition of k, made on first use; nil (logged) if
// it cannot be forwarded.
func (f *Forwarder) partition(ctx context.Context, k partKey) *partition {
	f.mu.Lock()
	p := f.parts[k]
	f.mu.Unlock()
	if p != nil {
		return p
	}
	src, err := f.src.open(k.topic, k.part)
	if err != nil {
		f.log.Warn("upstream: cannot open partition", "topic", k.topic, "partition", k.part, "err", err)
		return nil
	}
	o := wire.Origin{Site: f.cfg.Site, Node: f.cfg.Node, Topic: k.topic, Partition: k.part}
	if p, err = newPartition(f, o, src); err != nil {
		// A topic name wire refuses cannot go upstream at all.
		f.log.Error("upstream: partition cannot be forwarded", "topic", k.topic, "partition", k.part, "err", err)
		return nil
	}
	p.holdFromCursor(ctx)
	f.mu.Lock()
	f.parts[k] = p
	f.mu.Unlock()
	return p
}

// partitionsSorted returns the known partitions by topic and partition.
func (f *Forwarder) partitionsSorted() []*partition {
	f.mu.Lock()
	ps := make([]*partition, 0, len(f.parts))
	for _, p := range f.parts {
		ps = append(ps, p)
	}
	f.mu.Unlock()
	sortPartitions(ps)
	return ps
}

func (f *Forwarder) cursorLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.CursorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.commitCursors(ctx)
		}
	}
}

// commitCursors writes every acknowledged position that moved. The calls
// run concurrently so the store (meta's db.Batch) commits them in one
// transaction and one fsync.
func (f *Forwarder) commitCursors(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range f.partitionsSorted() {
		a := p.acked.Load()
		if a < 0 || a == p.committed.Load() {
			continue
		}
		wg.Go(func() { p.commitCursor(ctx, a) })
	}
	wg.Wait()
}
