package sites

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/wire"
)

// Config bounds the registry.
type Config struct {
	// Prefix is the subject prefix status reports arrive under.
	Prefix string `yaml:"-"`
	// MaxNodes is the most nodes kept; reports from more are dropped.
	MaxNodes int `yaml:"max_nodes"`
	// ForgetAfter drops a node that has not reported for this long; 0
	// keeps nodes until restart.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// StaleAfter marks a node stale in the view when it has not reported
	// for this long: its lag figures are then old news (the site is
	// probably offline and its real lag growing).
	StaleAfter time.Duration `yaml:"stale_after"`
	// Replicas is the replication factor of the status stream that keeps
	// each node's last report across core restarts
	// (wire.StatusStreamName); 0 takes streams.defaults.replicas.
	Replicas int `yaml:"replicas"`
}

// DefaultConfig returns 10000 nodes, stale after 6 missed reports
// (30 s at wire.DefaultStatusInterval), forgotten after 7 days of silence.
func DefaultConfig() Config {
	return Config{Prefix: wire.DefaultPrefix, MaxNodes: 10000, ForgetAfter: 7 * 24 * time.Hour, StaleAfter: 6 * wire.DefaultStatusInterval}
}

// Validate names the offending field (under "sites.").
func (c Config) Validate() error {
	if c.MaxNodes < 1 {
		return fmt.Errorf("sites.max_nodes: %d, want >= 1", c.MaxNodes)
	}
	if c.ForgetAfter < 0 {
		return fmt.Errorf("sites.forget_after: %v is negative; use 0 to never forget", c.ForgetAfter)
	}
	if c.ForgetAfter > 0 && c.ForgetAfter < time.Second {
		// It is also the status stream's max age, which JetStream wants
		// at 100 ms or more; below a second is a typo anyway.
		return fmt.Errorf("sites.forget_after: %v, want 0 (never forget) or >= 1s", c.ForgetAfter)
	}
	if c.StaleAfter <= 0 {
		return fmt.Errorf("sites.stale_after: %v, want > 0", c.StaleAfter)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("sites.replicas: %d is outside 1..5 (0: as streams.defaults.replicas)", c.Replicas)
	}
	return nil
}

type nodeKey struct{ site, node string }

type nodeState struct {
	lastContact time.Time   // when the last report arrived (see Node.LastContact)
	status      wire.Status // the last report
}

// sweepInterval spaces out the scans for forgotten nodes: a scan visits
// every node, and reports arrive at max_nodes / 5 s. Between scans the
// view filters forgotten nodes as it reads them.
const sweepInterval = time.Second

// Registry is the in-memory view. It is safe for concurrent use.
type Registry struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	mu        sync.Mutex
	nodes     map[nodeKey]*nodeState // mu
	nextSweep time.Time              // mu

	reports *prometheus.CounterVec // nil without registerer
}

// New returns an empty registry. log may be nil (discard); reg may be nil
// (no metrics).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sites: %w", err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Registry{cfg: cfg, log: log, now: time.Now, nodes: make(map[nodeKey]*nodeState)}
	if reg != nil {
		r.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_core_status_reports_total",
			Help: "Edge status reports received live or restored from the status stream at start, by result (ok, restored, outdated, invalid, dropped_max_nodes).",
		}, []string{"result"})
		if err := reg.Register(r.reports); err != nil {
			return nil, fmt.Errorf("sites: register metrics: %w", err)
		}
		if err := reg.Register((*collector)(r)); err != nil {
			return nil, fmt.Errorf("sites: register metrics: %w", err)
		}
	}
	return r, nil
}

func (r *Registry) count(result string) {
	if r.reports != nil {
		r.reports.WithLabelValues(result).Inc()
	}
}

// HandleStatus takes one report from NATS; subscribe it (no queue group:
// every core instance wants every report) on wire.StatusSubscription.
func (r *Registry) HandleStatus(m *nats.Msg) {
	if err := r.handle(m.Subject, m.Data); err != nil {
		r.log.Warn("status report refused", "subject", m.Subject, "err", err)
	}
}

func (r *Registry) handle(subject string, data []byte) error {
	st, err := r.parse(subject, data)
	if err != nil {
		return err
	}
	return r.Report(st)
}

// parse decodes a report and checks it against the subject it came on.
func (r *Registry) parse(subject string, data []byte) (wire.Status, error) {
	site, node, err := wire.ParseStatusSubject(r.cfg.Prefix, subject)
	if err != nil {
		r.count("invalid")
		return wire.Status{}, err
	}
	st, err := wire.DecodeStatus(data)
	if err != nil {
		r.count("invalid")
		return wire.Status{}, err
	}
	if st.Site != site || st.Node != node {
		r.count("invalid")
		return wire.Status{}, fmt.Errorf("sites: report for %s/%s arrived on the subject of %s/%s", st.Site, st.Node, site, node)
	}
	return st, nil
}

// Report records st as its node's latest state, arrived now.
func (r *Registry) Report(st wire.Status) error {
	_, err := r.reportAt(st, r.now(), "ok")
	return err
}

// ReportAt records st as its node's state with last contact at, for a
// report that arrived earlier than now (one restored from the status
// stream, with the time the stream stored it). The view keeps whichever
// of st and what it already holds for the node arrived later, so restoring
// may run alongside live reports in any order. A report older than
// ForgetAfter is ignored, so a forgotten node is not brought back. A time
// ahead of the registry's clock (skew between core and the NATS server)
// counts as now.
func (r *Registry) ReportAt(st wire.Status, at time.Time) error {
	_, err := r.reportAt(st, at, "restored")
	return err
}

// reportAt reports whether st was taken; result labels the count when it
// was.
func (r *Registry) reportAt(st wire.Status, at time.Time, result string) (bool, error) {
	now := r.now()
	if at.After(now) {
		at = now
	}
	if r.cfg.ForgetAfter > 0 && now.Sub(at) > r.cfg.ForgetAfter {
		r.count("outdated")
		return false, nil
	}
	k := nodeKey{st.Site, st.Node}
	r.mu.Lock()
	r.sweepLocked(now, false)
	n, ok := r.nodes[k]
	if ok && r.forgotten(n, now) {
		delete(r.nodes, k)
		ok = false
	}
	if !ok {
		if len(r.nodes) >= r.cfg.MaxNodes {
			r.sweepLocked(now, true)
		}
		if len(r.nodes) >= r.cfg.MaxNodes {
			r.mu.Unlock()
			r.count("dropped_max_nodes")
			return false, fmt.Errorf("sites: %d nodes known (sites.max_nodes); dropping report of %s/%s", r.cfg.MaxNodes, st.Site, st.Node)
		}
		n = &nodeState{}
		r.nodes[k] = n
	} else if at.Before(n.lastContact) {
		r.mu.Unlock()
		r.count("outdated")
		return false, nil
	}
	n.lastContact = at
	n.status = st
	r.mu.Unlock()
	if !ok {
		if result == "restored" {
			r.log.Debug("edge node restored from the status stream", "site", st.Site, "node", st.Node, "last_contact", at)
		} else {
			r.log.Info("new edge node reported", "site", st.Site, "node", st.Node, "partitions", len(st.Partitions))
		}
	}
	r.count(result)
	return true, nil
}

func (r *Registry) forgotten(n *nodeState, now time.Time) bool {
	return r.cfg.ForgetAfter > 0 && now.Sub(n.lastContact) > r.cfg.ForgetAfter
}

// sweepLocked drops forgotten nodes, at most once per sweepInterval
// unless forced.
func (r *Registry) sweepLocked(now time.Time, force bool) {
	if r.cfg.ForgetAfter <= 0 || (!force && now.Before(r.nextSweep)) {
		return
	}
	r.nextSweep = now.Add(sweepInterval)
	for k, n := range r.nodes {
		if r.forgotten(n, now) {
			delete(r.nodes, k)
		}
	}
}

// Site is one site in the /v1/sites view.
type Site struct {
	Site  string `json:"site"`
	Nodes []Node `json:"nodes"`
}

// Node is one edge node in the /v1/sites view.
type Node struct {
	Node string `json:"node"`
	// LastContact is when the last report arrived: core's clock for a
	// report received live, the NATS server's clock (the time the status
	// stream stored it) for one restored at core start.
	LastContact time.Time `json:"last_contact"`
	// LastContactAgeSeconds is how long ago that was.
	LastContactAgeSeconds float64 `json:"last_contact_age_seconds"`
	// Stale is true when the node has not reported for sites.stale_after:
	// the lag below is what it was then.
	Stale bool `json:"stale"`
	// ReportTime is the edge's clock in the last report (skew shows here).
	ReportTime time.Time `json:"report_time"`
	// Software is what the edge says it runs.
	Software string `json:"software,omitempty"`
	// ForwardedBy is the node that forwards this node's partitions and
	// sent the last report: the node itself, or a site peer forwarding
	// them from its replica while this node is gone (replication
	// takeover). Reports from a peer keep LastContact fresh: a node
	// forwarded by another is down or cut off.
	ForwardedBy string `json:"forwarded_by"`
	// LagRecords and LagBytes sum the partitions'.
	LagRecords int64 `json:"lag_records"`
	LagBytes   int64 `json:"lag_bytes"`
	// Partitions as the edge reported them, sorted by topic and partition.
	Partitions []wire.PartitionStatus `json:"partitions"`
}

// Sites returns the current view, sorted by site and node.
func (r *Registry) Sites() []Site {
	now := r.now()
	r.mu.Lock()
	r.sweepLocked(now, false)
	bySite := make(map[string][]Node)
	for k, n := range r.nodes {
		if r.forgotten(n, now) {
			continue
		}
		v := Node{
			Node:                  k.node,
			LastContact:           n.lastContact.UTC(),
			LastContactAgeSeconds: now.Sub(n.lastContact).Seconds(),
			Stale:                 now.Sub(n.lastContact) > r.cfg.StaleAfter,
			ReportTime:            n.status.Time,
			Software:              n.status.Software,
			ForwardedBy:           cmp.Or(n.status.ForwardedBy, k.node),
			Partitions:            slices.Clone(n.status.Partitions),
		}
		bySite[k.site] = append(bySite[k.site], v)
	}
	r.mu.Unlock()

	out := make([]Site, 0, len(bySite))
	for site, nodes := range bySite {
		for i := range nodes {
			n := &nodes[i]
			slices.SortFunc(n.Partitions, func(a, b wire.PartitionStatus) int {
				return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
			})
			for _, p := range n.Partitions {
				n.LagRecords += p.LagRecords
				n.LagBytes += p.LagBytes
			}
			if n.Partitions == nil {
				n.Partitions = []wire.PartitionStatus{}
			}
		}
		slices.SortFunc(nodes, func(a, b Node) int { return cmp.Compare(a.Node, b.Node) })
		out = append(out, Site{Site: site, Nodes: nodes})
	}
	slices.SortFunc(out, func(a, b Site) int { return cmp.Compare(a.Site, b.Site) })
	return out
}

// SitesResponse is the body of GET /v1/sites.
type SitesResponse struct {
	Sites []Site `json:"sites"`
}

// ServeHTTP serves GET /v1/sites.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(SitesResponse{Sites: r.Sites()}); err != nil {
		r.log.Debug("sites: write response", "err", err)
	}
}

// collector exports the view as gauges, computed at scrape time so that
// forgotten nodes vanish without bookkeeping.
type collector Registry

var (
	descLastContact = prometheus.NewDesc("outpost_core_node_last_contact_timestamp_seconds",
		"When core last received a status report from the node (Unix seconds).", []string{"site", "node"}, nil)
	descLagRecords = prometheus.NewDesc("outpost_core_forward_lag_records",
		"Records not yet forwarded, per origin partition, as the edge last reported.", []string{"site", "node", "topic", "partition"}, nil)
	descLagBytes = prometheus.NewDesc("outpost_core_forward_lag_bytes",
		"Bytes not yet forwarded, per origin partition, as the edge last reported.", []string{"site", "node", "topic", "partition"}, nil)
	descOldest = prometheus.NewDesc("outpost_core_forward_oldest_unforwarded_age_seconds",
		"Age of the oldest unforwarded record, per origin partition, as the edge last reported.", []string{"site", "node", "topic", "partition"}, nil)
	descNodes = prometheus.NewDesc("outpost_core_nodes", "Edge nodes in the sites view.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLastContact
	ch <- descLagRecords
	ch <- descLagBytes
	ch <- descOldest
	ch <- descNodes
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	sites := (*Registry)(c).Sites()
	nodes := 0
	for _, s := range sites {
		for _, n := range s.Nodes {
			nodes++
			ch <- prometheus.MustNewConstMetric(descLastContact, prometheus.GaugeValue,
				float64(n.LastContact.UnixNano())/1e9, s.Site, n.Node)
			for _, p := range n.Partitions {
				part := strconv.FormatInt(int64(p.Partition), 10)
				ch <- prometheus.MustNewConstMetric(descLagRecords, prometheus.GaugeValue, float64(p.LagRecords), s.Site, n.Node, p.Topic, part)
				ch <- prometheus.MustNewConstMetric(descLagBytes, prometheus.GaugeValue, float64(p.LagBytes), s.Site, n.Node, p.Topic, part)
				ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, float64(p.OldestUnforwardedAgeMs)/1e3, s.Site, n.Node, p.Topic, part)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(nodes))
}

// Known reports whether a node of site is in the view (reported within
// ForgetAfter, live or restored). core/command refuses commands for sites
// it does not know.
func (r *Registry) Known(site string) bool {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, n := range r.nodes {
		if k.site == site && !r.forgotten(n, now) {
			return true
		}
	}
	return false
}
