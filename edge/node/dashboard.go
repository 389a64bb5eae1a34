package node

import (
	"context"
	"fmt"
	"maps"
	"net/http"

	"github.com/outpost-edge/outpost/edge/ui"
	"github.com/outpost-edge/outpost/internal/buildinfo"
)

// openDashboard builds the dashboard (GET / on the HTTP listener) over the
// node's own metrics registry; its sampler runs as a service. It returns
// the routes to serve beside the API's.
func (n *Node) openDashboard() (map[string]http.Handler, error) {
	cfg := n.cfg
	d, err := ui.New(ui.Config{
		Gatherer: n.reg,
		Ready:    n.ready,
		Logger:   n.logger.With("component", "ui"),
		Devices:  n.devices,
		Info: func() ui.Info {
			return ui.Info{
				Node: n.identity.NodeID, Site: n.identity.Site, Sync: cfg.Log.Sync,
				DiskBudget: cfg.Log.DiskBudgetBytes, Upstream: cfg.Upstream.URL != "",
				Version: buildinfo.Get().Version,
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("node: dashboard: %w", err)
	}
	n.dash = d
	n.services = append(n.services, func(ctx context.Context, _ *Node) error { return d.Run(ctx) })
	routes := d.Routes()
	maps.Copy(routes, n.apiRoutes())
	return routes, nil
}

// devices lists the broker's clients (connected, or with a kept session)
// with what the ingest hook counted of each.
func (n *Node) devices() []ui.Device {
	stats := n.ingest.DeviceStats()
	var out []ui.Device
	for _, cl := range n.server.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		st := stats[cl.ID]
		out = append(out, ui.Device{ID: cl.ID, Protocol: cl.Properties.ProtocolVersion, Address: cl.Net.Remote,
			Connected: !cl.Closed(), Messages: st.Published, LastSeen: st.LastPublish})
	}
	return out
}
