package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/outpost-edge/outpost/bridge/auth"
	"github.com/outpost-edge/outpost/bridge/deliver"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/sync/downlink"
)

// DownlinkConfig configures commands from the centre to devices
// (sync/downlink takes them, bridge/deliver delivers them). It runs when
// upstream is configured, unless disabled.
type DownlinkConfig struct {
	// Disabled turns the downlink off.
	Disabled bool `yaml:"disabled"`
	// MaxPerDevice and MaxQueued bound the commands queued at this node,
	// per device and in all; beyond them a command is rejected
	// (queue_full).
	MaxPerDevice int `yaml:"max_per_device"`
	MaxQueued    int `yaml:"max_queued"`
	// ResponsePrefix: devices answer command <id> on
	// <response_prefix>/<device>/<id>.
	ResponsePrefix string `yaml:"response_prefix"`
}

func defaultDownlink() DownlinkConfig {
	d := downlink.DefaultConfig()
	return DownlinkConfig{MaxPerDevice: d.MaxPerDevice, MaxQueued: d.MaxQueued, ResponsePrefix: deliver.DefaultResponsePrefix}
}

func (d DownlinkConfig) validate() error {
	switch {
	case d.MaxPerDevice < 1:
		return fmt.Errorf("config: downlink.max_per_device: %d is below 1", d.MaxPerDevice)
	case d.MaxQueued < d.MaxPerDevice:
		return fmt.Errorf("config: downlink.max_queued: %d is below max_per_device %d", d.MaxQueued, d.MaxPerDevice)
	case d.ResponsePrefix == "":
		return errors.New("config: downlink.response_prefix: empty")
	}
	return nil
}

// createDownlinkTopics creates the downlink's log topics (one partition
// each).
func (n *Node) createDownlinkTopics() error {
	tc := log.TopicConfig{Partitions: 1, RetentionBytes: n.cfg.Log.RetentionBytes, RetentionAge: n.cfg.Log.RetentionAge}
	for _, t := range []string{wire.CommandLogTopic, wire.CommandStatusTopic} {
		if err := n.log.CreateTopic(t, tc); err != nil && !errors.Is(err, log.ErrTopicExists) {
			return fmt.Errorf("node: downlink: %w", err)
		}
	}
	return nil
}

// downlinkOn reports whether the node runs the downlink.
func (n *Node) downlinkOn() bool { return n.cfg.Upstream.URL != "" && !n.cfg.Downlink.Disabled }

// openDownlink creates the downlink's log topics and opens its queue,
// which takes commands over the node's uplink (runUplink) while it runs.
func (n *Node) openDownlink(ctx context.Context) error {
	dc := downlink.DefaultConfig()
	dc.Site = n.cfg.Upstream.Site
	dc.Node = n.cfg.Upstream.Node
	if dc.Node == "" {
		dc.Node = n.identity.NodeID
	}
	dc.MaxPerDevice, dc.MaxQueued = n.cfg.Downlink.MaxPerDevice, n.cfg.Downlink.MaxQueued
	dc.Logger = n.logger.With("component", "downlink")
	dc.Registerer = n.reg
	s, err := downlink.Open(ctx, dc, n.log, n.meta)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.downlink = s // runUplink runs its taker on the shared link
	return nil
}

// openDeliverer adds the delivery hook (before ingest, so it sees answers
// first) and runs it as a service.
func (n *Node) openDeliverer(ah *auth.Hook) error {
	d, err := deliver.New(deliver.Config{
		Server: n.server, Queue: n.downlink, Site: n.cfg.Upstream.Site,
		MaySubscribe:   func(cl *mochi.Client, topic string) bool { return ah.OnACLCheck(cl, topic, false) },
		ResponsePrefix: n.cfg.Downlink.ResponsePrefix,
		Logger:         n.logger.With("component", "deliver"), Registerer: n.reg,
	})
	if err != nil {
		return fmt.Errorf("node: downlink.response_prefix: %w", err)
	}
	if err := n.server.AddHook(d, nil); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.services = append(n.services, func(ctx context.Context, _ *Node) error { return d.Run(ctx) })
	return nil
}

// apiRoutes are the HTTP routes of components beside the log.
func (n *Node) apiRoutes() map[string]http.Handler {
	if n.downlink == nil {
		return nil
	}
	return map[string]http.Handler{"GET /v1/commands": n.downlink}
}
