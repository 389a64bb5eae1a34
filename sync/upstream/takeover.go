package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// Liveness says whether a peer is reachable from this node;
// *peer.Follower satisfies it (its replication link to the owner is up).
type Liveness interface {
	Connected() bool
}

// TakeoverConfig configures a Takeover.
type TakeoverConfig struct {
	// Forwarder is how to forward (Link, Mode, Prefix, timings…); Site and
	// Node name the origin: the peer whose replica this node keeps.
	// Fenced, ReleaseHolds, ForwardedBy and CursorName are set by
	// NewTakeover; Registerer is ignored (the node's own forwarder owns
	// the forwarding metrics' names).
	Forwarder Config
	// Holder is this node's name: it holds the lease while it forwards.
	Holder string
	// Owner tells whether the origin node is reachable.
	Owner Liveness
	// After is how long the origin must be unreachable before this node
	// tries its lease (the lease must also have expired).
	After time.Duration
	// TTL is the lease time to live if this node creates the bucket.
	TTL time.Duration
	// Metrics may be nil.
	Metrics *LeaseMetrics
}

// Takeover forwards a peer's replicated partitions to the centre while
// that peer is gone (G3 and G6: a dead node's acknowledged records still
// arrive, exactly once). It forwards only while both hold: the peer has
// been unreachable from this node for After, and this node holds the
// peer's forwarding lease, which the peer renews while it is up and
// connected (LeaseKeeper), so a peer that is only cut off from this node
// keeps forwarding itself. It stops when the peer is reachable again, when
// the lease is lost (the peer took it back: the origin has priority) or
// cannot be renewed, and releases the lease.
//
// Forwarding resumes from exactly where the central stream ends (the
// forwarder's resolve), is fenced (Config.Fenced: atomic batches each
// conditional on the subject's last sequence), so a takeover whose lease
// lapsed without its knowing cannot duplicate or reorder, and reads the
// replica, which nobody appends to while its owner is gone.
type Takeover struct {
	cfg TakeoverConfig
	f   *Forwarder
	log *slog.Logger
	m   *LeaseMetrics
}

// TakeoverCursor is the cursor (and retention hold) name a takeover of
// owner's partitions uses in this node's stores.
func TakeoverCursor(owner string) string { return "takeover/" + owner }

// NewTakeover makes the forwarder of replica (pinning its origin in store
// under TakeoverCursor); Run watches the owner and forwards.
func NewTakeover(ctx context.Context, cfg TakeoverConfig, replica *log.Log, store metaStore) (*Takeover, error) {
	if cfg.Owner == nil {
		return nil, errors.New("upstream: takeover: Owner is nil")
	}
	if err := wire.ValidateName("holder", cfg.Holder); err != nil {
		return nil, fmt.Errorf("upstream: takeover: %w", err)
	}
	if cfg.Holder == cfg.Forwarder.Node {
		return nil, fmt.Errorf("upstream: takeover: %q cannot take over from itself", cfg.Holder)
	}
	if cfg.Forwarder.Link == nil {
		return nil, errors.New("upstream: takeover: Forwarder.Link is nil (a takeover shares the node's uplink)")
	}
	if cfg.TTL == 0 {
		cfg.TTL = wire.DefaultLeaseTTL
	}
	if cfg.After <= 0 {
		cfg.After = 5 * time.Second
	}
	fc := cfg.Forwarder
	fc.Fenced, fc.ReleaseHolds, fc.ForwardedBy = true, true, cfg.Holder
	fc.CursorName = TakeoverCursor(fc.Node)
	fc.Registerer = nil
	lg := fc.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	fc.Logger = lg.With("takeover_of", fc.Node)
	f, err := New(ctx, fc, replica, store)
	if err != nil {
		return nil, fmt.Errorf("upstream: takeover of %s: %w", fc.Node, err)
	}
	m := cfg.Metrics
	if m == nil {
		m, _ = NewLeaseMetrics(nil)
	}
	m.held.WithLabelValues(fc.Node)
	m.takeovers.WithLabelValues(fc.Node)
	m.lost.WithLabelValues(fc.Node)
	return &Takeover{cfg: cfg, f: f, log: lg.With("component", "takeover", "origin", fc.Node), m: m}, nil
}

// Forwarder returns the takeover's forwarder (its Lag shows how far the
// replica is forwarded while a takeover runs).
func (t *Takeover) Forwarder() *Forwarder { return t.f }

// Run watches the owner until ctx ends.
func (t *Takeover) Run(ctx context.Context) error {
	poll := min(500*time.Millisecond, t.cfg.After/4)
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var downSince time.Time
	heldBy := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if t.cfg.Owner.Connected() {
			downSince, heldBy = time.Time{}, ""
			continue
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		c := t.cfg.Forwarder.Link.Conn()
		if time.Since(downSince) < t.cfg.After || c == nil {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, t.cfg.TTL/3)
		ls, err := OpenLeases(actx, c.JetStream(), t.cfg.TTL)
		var l *Lease
		if err == nil {
			l, err = ls.Acquire(actx, t.cfg.Forwarder.Site, t.cfg.Forwarder.Node, t.cfg.Holder)
		}
		cancel()
		var held *LeaseHeldError
		switch {
		case errors.As(err, &held):
			if held.Holder != heldBy {
				heldBy = held.Holder
				t.log.Info("upstream: peer unreachable, but its forwarding lease is held; not taking over", "holder", held.Holder,
					"unreachable_for", time.Since(downSince).Round(time.Second))
			}
			continue
		case err != nil:
			t.log.Debug("upstream: cannot try the peer's forwarding lease", "err", err)
			continue
		}
		heldBy = ""
		t.forward(ctx, ls, l, time.Since(downSince))
	}
}

// forward runs the forwarder under l until the owner is back, the lease is
// lost or cannot be renewed, or ctx ends.
func (t *Takeover) forward(ctx context.Context, ls *Leases, l *Lease, down time.Duration) {
	origin := t.cfg.Forwarder.Node
	t.m.takeovers.WithLabelValues(origin).Inc()
	g := t.m.held.WithLabelValues(origin)
	g.Set(1)
	defer g.Set(0)
	t.log.Warn("upstream: taking over forwarding of an unreachable peer's partitions from this node's replica",
		"unreachable_for", down.Round(time.Millisecond))
	start := time.Now()
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- t.f.Run(fctx) }()

	renew := time.NewTicker(ls.TTL() / 3)
	defer renew.Stop()
	check := time.NewTicker(min(250*time.Millisecond, t.cfg.After/4))
	defer check.Stop()
	lastRenew := time.Now()
	reason, lost := "", false
	for reason == "" {
		select {
		case <-ctx.Done():
			reason = "shutting down"
		case <-check.C:
			if t.cfg.Owner.Connected() {
				reason = "the peer is reachable again"
			}
		case <-renew.C:
			rctx, cancel := context.WithTimeout(ctx, ls.TTL()/3)
			err := l.Renew(rctx)
			cancel()
			switch {
			case err == nil:
				lastRenew = time.Now()
			case errors.Is(err, ErrLeaseLost):
				reason, lost = "the lease was taken (the peer is back) or expired", true
				t.m.lost.WithLabelValues(origin).Inc()
			case time.Since(lastRenew) > ls.TTL()*2/3:
				// Better to stop than to forward on a lease about to lapse;
				// fencing covers what is in flight.
				reason = fmt.Sprintf("the lease could not be renewed for %v: %v", time.Since(lastRenew).Round(time.Millisecond), err)
			}
		}
	}
	stop()
	if err := <-done; err != nil {
		t.log.Error("upstream: takeover forwarder", "err", err)
	}
	if !lost {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		if err := l.Release(rctx); err != nil {
			t.log.Debug("upstream: lease not released (it expires by itself)", "err", err)
		}
		cancel()
	}
	t.log.Info("upstream: stopped forwarding the peer's partitions", "reason", reason, "forwarded_for", time.Since(start).Round(time.Millisecond))
}
