package node

import (
	"context"
	"errors"
	"fmt"
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
	uc.URL = u.URL
	uc.CredsFile = u.CredsFile
	uc.TLS.CAFile, uc.TLS.CertFile, uc.TLS.KeyFile = u.TLSCAFile, u.TLSCertFile, u.TLSKeyFile
	uc.Site, uc.Node = u.Site, nodeName
	if u.Mode == "batch" {
		uc.Mode = upstream.ModeBatch
	}
	uc.BandwidthBytesPerSec = u.BandwidthBytesPerSec
	uc.CreateStreams = u.CreateStreams
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
	n.services = append(n.services, func(ctx context.Context, _ *Node) error { return f.Run(ctx) })
	n.logger.Info("node: forwarding upstream", "url", u.URL, "site", u.Site, "node", nodeName, "mode", u.Mode)
	return nil
}
