package ui

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/internal/sse"
	"github.com/prometheus/client_golang/prometheus"
)

// HistoryPoints is how many samples the dashboard keeps for its chart and
// forecasts: 5 minutes at the default Interval.
const HistoryPoints = 300

// Info is what the dashboard shows that is not a metric.
type Info struct {
	Node, Site string
	Sync       string // log.sync
	DiskBudget int64  // log.disk_budget_bytes; 0: none
	Upstream   bool   // an uplink is configured
	Version    string
}

// Config is what a Dashboard reads.
type Config struct {
	// Gatherer is the node's metrics registry.
	Gatherer prometheus.Gatherer
	// Info returns the static facts; called once per sample.
	Info func() Info
	// Ready returns nil when the node is ready, else why not (the same
	// answer as /readyz).
	Ready func() error
	// Devices returns the devices the broker knows (connected or with a
	// kept session); nil shows none.
	Devices func() []Device
	// Interval between samples; 0 means one second.
	Interval time.Duration
	Logger   *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Dashboard samples the node's metrics and serves them to viewers.
type Dashboard struct {
	cfg Config

	hub *sse.Hub

	mu      sync.Mutex // guards the sampler's state below
	history []Point    // ring of samples, oldest first
	prev    *sampleRaw // the previous sample's counters
	down    time.Time  // when the uplink was last seen going down; zero while up
}

// New returns a Dashboard; Run samples.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("ui: Config.Gatherer is nil")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Info == nil {
		cfg.Info = func() Info { return Info{} }
	}
	d := &Dashboard{cfg: cfg, hub: sse.NewHub()}
	d.sample() // the first viewer never sees an empty page
	return d, nil
}

// Run samples every Interval until ctx ends.
func (d *Dashboard) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.sample()
		}
	}
}

// sample gathers the registry once, computes a snapshot and hands it to
// every viewer's mailbox without waiting for any of them.
func (d *Dashboard) sample() {
	mfs, err := d.cfg.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		d.cfg.Logger.Warn("ui: gathering metrics failed; the dashboard shows the last sample", "err", err)
		return
	}
	now := d.cfg.Now()
	raw := readRaw(mfs)
	info := d.cfg.Info()
	var notReady string
	if d.cfg.Ready != nil {
		if err := d.cfg.Ready(); err != nil {
			notReady = err.Error()
		}
	}

	var devices []Device
	if d.cfg.Devices != nil {
		devices = d.cfg.Devices()
	}
	d.mu.Lock()
	snap := d.compute(now, raw, info, notReady)
	d.mu.Unlock()
	snap.DevicesKnown, snap.Devices = len(devices), topDevices(devices, now)
	b, err := json.Marshal(snap)
	if err != nil {
		d.cfg.Logger.Error("ui: encode snapshot", "err", err)
		return
	}
	d.hub.Publish(b)
}

// Snapshot returns the latest snapshot as JSON.
func (d *Dashboard) Snapshot() []byte { return d.hub.Last() }

// Viewers returns how many event streams are open.
func (d *Dashboard) Viewers() int { return d.hub.Viewers() }
