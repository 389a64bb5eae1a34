package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/internal/backoff"
)

// LeaseMetrics are the forwarding lease metrics of one node, shared by its
// LeaseKeeper and its Takeovers.
type LeaseMetrics struct {
	held      *prometheus.GaugeVec
	takeovers *prometheus.CounterVec
	lost      *prometheus.CounterVec
}

// NewLeaseMetrics registers the lease metrics with reg (nil registers
// nothing).
func NewLeaseMetrics(reg prometheus.Registerer) (*LeaseMetrics, error) {
	m := &LeaseMetrics{
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_upstream_leases_held",
			Help: "1 for each origin node whose forwarding lease this node holds: its own, and a peer's whose replicated partitions it forwards while that peer is away.",
		}, []string{"origin"}),
		takeovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_upstream_takeovers_total",
			Help: "Times this node took over forwarding a peer's replicated partitions (the peer unreachable and its lease expired).",
		}, []string{"origin"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_upstream_leases_lost_total",
			Help: "Leases this node held that another node took or that expired before renewal (for its own origin: taken back at once).",
		}, []string{"origin"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.held, m.takeovers, m.lost} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("upstream: register lease metrics: %w", err)
			}
		}
	}
	return m, nil
}

// LeaseKeeperConfig configures a LeaseKeeper.
type LeaseKeeperConfig struct {
	// Link is the node's uplink (run by its owner).
	Link *Link
	// Site and Node name this node: the origin whose lease it keeps.
	Site, Node string
	// TTL is the lease time to live if this node creates the bucket
	// (wire.DefaultLeaseTTL when 0); an existing bucket keeps its own.
	TTL time.Duration
	// Logger receives lease changes; nil discards.
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *LeaseMetrics
}

// LeaseKeeper holds a node's lease on forwarding its own partitions while
// the uplink is up, so that a peer keeping a replica of them does not take
// over while this node forwards. The origin node has priority: a lease a
// peer took while this node was away (or cut off from the centre and from
// the peer) is taken back at once (Leases.Take); the peer stops at its
// next renewal, and fenced publishing keeps its last batches from
// duplicating anything. The node's own forwarder does not wait for the
// lease: it is the owner of the log, and a lease service it cannot reach
// is a centre it cannot reach either.
type LeaseKeeper struct {
	cfg LeaseKeeperConfig
	log *slog.Logger
	m   *LeaseMetrics
}

// NewLeaseKeeper checks cfg; Run keeps the lease.
func NewLeaseKeeper(cfg LeaseKeeperConfig) (*LeaseKeeper, error) {
	if cfg.Link == nil {
		return nil, errors.New("upstream: lease keeper: Link is nil")
	}
	if err := wire.ValidateName("site", cfg.Site); err != nil {
		return nil, fmt.Errorf("upstream: lease keeper: %w", err)
	}
	if err := wire.ValidateName("node", cfg.Node); err != nil {
		return nil, fmt.Errorf("upstream: lease keeper: %w", err)
	}
	if cfg.TTL == 0 {
		cfg.TTL = wire.DefaultLeaseTTL
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := cfg.Metrics
	if m == nil {
		m, _ = NewLeaseMetrics(nil)
	}
	return &LeaseKeeper{cfg: cfg, log: lg.With("component", "lease", "origin", cfg.Node), m: m}, nil
}

// Run keeps the lease until ctx ends, then releases it (so that a peer may
// take over as soon as it finds this node gone, not a TTL later).
func (k *LeaseKeeper) Run(ctx context.Context) error {
	b := backoff.Backoff{Min: 250 * time.Millisecond, Max: k.cfg.TTL / 3}
	attempt := 0
	counted := false // the loss was counted at a renewal already
	warned := ""     // the last failure logged as a warning
	for {
		c, err := k.cfg.Link.Wait(ctx)
		if err != nil {
			return nil
		}
		held, err := k.hold(ctx, c, &counted)
		if ctx.Err() != nil {
			return nil
		}
		if held {
			attempt = 0
		}
		if errors.Is(err, ErrLeaseLost) {
			k.m.lost.WithLabelValues(k.cfg.Node).Inc()
			counted = true
			k.log.Warn("upstream: a peer took this node's forwarding lease (it found this node unreachable); taking it back", "err", err)
			continue
		}
		if held {
			warned = ""
		}
		// Once per kind of failure: without the lease a peer cannot tell
		// this node is forwarding, and takes over after takeover_after
		// once this node is unreachable on the site network too.
		if msg := fmt.Sprint(err); msg != warned && !errors.Is(err, context.DeadlineExceeded) {
			warned = msg
			k.log.Warn("upstream: cannot hold this node's forwarding lease in the centre; retrying (forwarding goes on; a peer could take over only if it also lost sight of this node)", "err", err)
		} else {
			k.log.Debug("upstream: forwarding lease not held; retrying", "err", err)
		}
		backoff.Sleep(ctx, b.Delay(attempt))
		attempt++
	}
}

// hold takes the lease on c and renews it until an error or ctx's end.
// A lease found held by a peer (it took over while this node could not
// renew) counts as lost unless counted says a renewal found that already.
func (k *LeaseKeeper) hold(ctx context.Context, c *Conn, counted *bool) (held bool, err error) {
	ttl := k.cfg.TTL
	octx, cancel := context.WithTimeout(ctx, ttl/3)
	ls, err := OpenLeases(octx, c.JetStream(), ttl)
	if err != nil {
		cancel()
		return false, err
	}
	l, prev, err := ls.Take(octx, k.cfg.Site, k.cfg.Node, k.cfg.Node)
	cancel()
	if err != nil {
		return false, err
	}
	if prev != "" {
		if !*counted {
			k.m.lost.WithLabelValues(k.cfg.Node).Inc()
		}
		k.log.Info("upstream: took forwarding of this node's partitions back from a peer", "peer", prev)
	}
	*counted = false
	g := k.m.held.WithLabelValues(k.cfg.Node)
	g.Set(1)
	defer g.Set(0)
	t := time.NewTicker(ls.TTL() / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			if err := l.Release(rctx); err != nil {
				k.log.Debug("upstream: forwarding lease not released (it expires by itself)", "err", err)
			}
			return true, nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, ls.TTL()/3)
		err := l.Renew(rctx)
		cancel()
		if err != nil {
			return true, err
		}
	}
}
