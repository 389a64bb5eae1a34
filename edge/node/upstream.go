package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// UpstreamConfig configures store-and-forward to the central NATS
// JetStream cluster (sync/upstream). An empty URL disables forwarding: the
// node then keeps everything locally, under retention and the disk budget.
type UpstreamConfig struct {
	// URL is the central NATS server or cluster seed list
	// (nats://core:4222, tls://…); "" disables forwarding.
	URL string `yaml:"url"`
	// Site names the field site; it is part of every subject and message
	// id upstream, so it must not change once records were forwarded.
	Site string `yaml:"site"`
	// Node names this node within its site; "" uses the node's generated
	// id (kept in the metadata store). Like Site, it must not change.
	Node string `yaml:"node"`
	// CredsFile is a NATS credentials file (JWT and NKey seed).
	CredsFile string `yaml:"creds_file"`
	// TLSCAFile, TLSCertFile and TLSKeyFile configure TLS to the centre.
	TLSCAFile   string `yaml:"tls_ca_file"`
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// Mode is "record" (one NATS message per record, readable by any NATS
	// client) or "batch" (many records per message; for centres that run
	// sync_interval: always).
	Mode string `yaml:"mode"`
	// BandwidthBytesPerSec caps the uplink's record bytes per second; 0 is
	// no cap.
	BandwidthBytesPerSec int64 `yaml:"bandwidth_bytes_per_sec"`
	// CreateStreams asks core to provision a missing stream (or creates it
	// with core's defaults if no core answers).
	CreateStreams bool `yaml:"create_streams"`
	// ReconnectMax caps the jittered backoff between connection attempts.
	ReconnectMax time.Duration `yaml:"reconnect_max"`
}

func defaultUpstream() UpstreamConfig {
	return UpstreamConfig{Site: "default", Mode: "record", CreateStreams: true, ReconnectMax: 30 * time.Second}
}

func (u UpstreamConfig) validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("config: upstream.%s: %s", field, fmt.Sprintf(format, args...))
	}
	if u.URL == "" {
		return nil
	}
	if err := wire.ValidateName("site", u.Site); err != nil {
		return bad("site", "%v", err)
	}
	if u.Node != "" {
		if err := wire.ValidateName("node", u.Node); err != nil {
			return bad("node", "%v", err)
		}
	}
	if u.Mode != "record" && u.Mode != "batch" {
		return bad("mode", "%q is not one of record, batch", u.Mode)
	}
	if u.BandwidthBytesPerSec < 0 {
		return bad("bandwidth_bytes_per_sec", "%d is negative", u.BandwidthBytesPerSec)
	}
	if u.ReconnectMax < 0 {
		return bad("reconnect_max", "%v is negative", u.ReconnectMax)
	}
	return nil
}

// openUpstream creates the forwarder (not yet running); the forwarder pins
// its origin names in the metadata store, so a changed site or node fails
// here.
func (n *Node) openUpstream(ctx context.Context) error {
	u := n.cfg.Upstream
	nodeName := u.Node
	if nodeName == "" {
		nodeName = n.identity.NodeID
	}
	uc := upstream.DefaultConfig()
	if u.ReconnectMax > 0 {
		uc.ReconnectMax = u.ReconnectMax
	}
	// One uplink connection per node, shared by the forwarder and the
	// schema sync (runUplink runs it).
	link, err := upstream.NewLink(upstream.LinkConfig{
		URL: u.URL, CredsFile: u.CredsFile,
		TLS:  upstream.TLSConfig{CAFile: u.TLSCAFile, CertFile: u.TLSCertFile, KeyFile: u.TLSKeyFile},
		Name: fmt.Sprintf("outpost-upstream %s/%s", u.Site, nodeName),
		// The forwarder's own link would take the same bounds.
		ReconnectMin: uc.ReconnectMin, ReconnectMax: max(uc.ReconnectMin, uc.ReconnectMax), Timeout: uc.AckTimeout,
		Logger: n.logger.With("component", "upstream"), Registerer: n.reg,
	})
	if err != nil {
		return fmt.Errorf("node: upstream: %w", err)
	}
	uc.Link = link
	uc.Site, uc.Node = u.Site, nodeName
	if u.Mode == "batch" {
		uc.Mode = upstream.ModeBatch
	}
	uc.BandwidthBytesPerSec = u.BandwidthBytesPerSec
	if n.uplinkBudget != nil {
		uc.Budget = n.uplinkBudget // shared with the peer links
	}
	uc.CreateStreams = u.CreateStreams
	// With replication a peer may forward this node's partitions while it
	// is away, and may still be doing so for a moment when it returns: both
	// forwarders are fenced, so neither relies on the duplicate window.
	uc.Fenced = n.cfg.Replication.Enabled()
	if n.owner != nil {
		// Forward only what the in-sync peers hold: a node restored from a
		// peer's replica must never find the centre ahead of it.
		uc.Watermark = n.owner
	}
	if u.ReconnectMax > 0 {
		uc.ReconnectMax = u.ReconnectMax
	}
	uc.Logger = n.logger // the forwarder names itself
	uc.Registerer = n.reg
	f, err := upstream.New(ctx, uc, n.log, n.meta)
	if errors.Is(err, upstream.ErrOriginChanged) {
		return fmt.Errorf("config: upstream.site/upstream.node: %w", err)
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.forwarder = f
	if n.cfg.Replication.Enabled() {
		if err := n.openTakeovers(ctx, uc, nodeName); err != nil {
			return err
		}
	}
	n.services = append(n.services, func(ctx context.Context, _ *Node) error { return n.runUplink(ctx, link) })
	n.logger.Info("node: forwarding upstream", "url", u.URL, "site", u.Site, "node", nodeName, "mode", u.Mode)
	return nil
}

// openTakeovers makes this node keep its own forwarding lease and take over
// forwarding each peer's replicated partitions while that peer is gone
// (sync/upstream Takeover): uc is this node's forwarder config, whose
// settings (link, mode, prefix, timings) the takeovers share.
func (n *Node) openTakeovers(ctx context.Context, uc upstream.Config, nodeName string) error {
	r := n.cfg.Replication
	m, err := upstream.NewLeaseMetrics(n.reg)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if n.leaseKeeper, err = upstream.NewLeaseKeeper(upstream.LeaseKeeperConfig{Link: uc.Link, Site: uc.Site, Node: nodeName,
		TTL: r.LeaseTTL, Logger: n.logger, Metrics: m}); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	for i, p := range r.Peers {
		fc := uc
		fc.Node = p.Name
		fc.Registerer = nil
		fc.Watermark = nil // a replica: nobody appends to it while its owner is gone
		tk, err := upstream.NewTakeover(ctx, upstream.TakeoverConfig{Forwarder: fc, Holder: nodeName, Owner: n.followers[i],
			After: r.TakeoverAfter, TTL: r.LeaseTTL, Metrics: m}, n.replicaLogs[i], n.meta)
		if errors.Is(err, upstream.ErrOriginChanged) {
			return fmt.Errorf("config: replication.peers[%d].name / upstream.site: %w", i, err)
		}
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		n.takeovers = append(n.takeovers, tk)
	}
	return nil
}

// runUplink runs the shared link and its users (the forwarder, the schema
// sync, the downlink's taker) until ctx ends. The link outlives its users: they stop first, so
// nothing they do at the end sees the connection closed under it.
func (n *Node) runUplink(ctx context.Context, link *upstream.Link) error {
	linkCtx, stopLink := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLink()
	var linkWG, users sync.WaitGroup
	linkWG.Go(func() { _ = link.Run(linkCtx) })
	errc := make(chan error, 4+len(n.takeovers))
	users.Go(func() { errc <- n.forwarder.Run(ctx) })
	if n.leaseKeeper != nil {
		users.Go(func() { errc <- n.leaseKeeper.Run(ctx) })
	}
	for _, tk := range n.takeovers {
		users.Go(func() { errc <- tk.Run(ctx) })
	}
	if n.schemaSync != nil {
		users.Go(func() { errc <- n.schemaSync.Run(ctx, link) })
	}
	if n.downlink != nil {
		users.Go(func() { errc <- n.downlink.Run(ctx, link) })
	}
	users.Wait()
	stopLink()
	linkWG.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
