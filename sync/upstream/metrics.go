package upstream

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are always created, so the code never checks for nil; they are
// registered only when Config.Registerer is set.
type metrics struct {
	forwardedRecords *prometheus.CounterVec
	forwardedBytes   *prometheus.CounterVec
	publishErrors    *prometheus.CounterVec
	resumes          *prometheus.CounterVec
	gapRecords       *prometheus.CounterVec
	lateResends      prometheus.Counter
	redoPersisted    prometheus.Counter
}

func newMetrics(f *Forwarder, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		forwardedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_upstream_forwarded_records_total",
			Help: "Records acknowledged by the central stream (duplicates acknowledged by its dedup window included).",
		}, []string{"topic", "partition"}),
		forwardedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_upstream_forwarded_bytes_total",
			Help: "Bytes of NATS message data (values, or batch payloads) acknowledged by the central stream.",
		}, []string{"topic", "partition"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_upstream_publish_errors_total",
			Help: "Publish and resume failures by kind (timeout, stream_missing, stream_full, permission, disconnected, other); each pauses the partition and retries with backoff.",
		}, []string{"kind"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_upstream_resumes_total",
			Help: "Resume points resolved (on start, after reconnects and errors), by source: stream (after its last message), cursor, log_start, resend (same-window resend after a suspected hole).",
		}, []string{"source"}),
		lateResends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_upstream_resends_beyond_window_total",
			Help: "Resends armed by a publish failure older than the duplicate window: the stream may hold duplicates (same origin offset) of records after the failure.",
		}),
		gapRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_upstream_gap_records_total",
			Help: "Records that will never be forwarded, by reason: retention (deleted at the edge before being forwarded), stream_ahead (the stream holds offsets beyond the log: restored disk), stream_behind (the stream lost records it had acknowledged; not resent).",
		}, []string{"reason"}),
		redoPersisted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_upstream_resends_armed_total",
			Help: "Resends armed and saved in the meta store because the server refused a publish, or a publish succeeded after one failed: forwarding restarts from the first unacknowledged record, also after a restart.",
		}),
	}
	for _, k := range errKinds {
		m.publishErrors.WithLabelValues(string(k))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.forwardedRecords, m.forwardedBytes, m.publishErrors,
		m.resumes, m.gapRecords, m.lateResends, m.redoPersisted, lagCollector{f}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("upstream: register metrics: %w", err)
		}
	}
	return m, nil
}

// linkMetrics are a Link's; like metrics, always created, and registered
// only when LinkConfig.Registerer is set.
type linkMetrics struct {
	reconnects    prometheus.Counter
	connected     prometheus.Gauge
	connectErrors *prometheus.CounterVec
	dialsDeferred prometheus.Counter
}

func newLinkMetrics(reg prometheus.Registerer) (*linkMetrics, error) {
	m := &linkMetrics{
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_upstream_reconnects_total",
			Help: "Reconnections of the uplink to NATS.",
		}),
		connectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_upstream_connect_errors_total",
			Help: "Failed connection attempts to NATS that nats.go reports, by kind: auth (credentials refused), other (unreachable, TLS, ...). nats.go reports a refused login once per run of refusals, a failed dial every time.",
		}, []string{"kind"}),
		dialsDeferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_upstream_dials_deferred_total",
			Help: "Reconnect dials put off because a publish was leaving at that moment (so that no window of publishes spans two connections); nats.go dials again after its reconnect delay.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_upstream_connected",
			Help: "1 while the uplink to NATS is connected.",
		}),
	}
	m.connectErrors.WithLabelValues("auth")
	m.connectErrors.WithLabelValues("other")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.reconnects, m.connected, m.connectErrors, m.dialsDeferred} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("upstream: register metrics: %w", err)
		}
	}
	return m, nil
}

var (
	lagRecordsDesc = prometheus.NewDesc("outpost_upstream_lag_records",
		"Records in the log not yet acknowledged by the central stream.", []string{"topic", "partition"}, nil)
	lagBytesDesc = prometheus.NewDesc("outpost_upstream_lag_bytes",
		"Estimated log bytes not yet acknowledged by the central stream (the partition's bytes per record times lag_records).", []string{"topic", "partition"}, nil)
	oldestAgeDesc = prometheus.NewDesc("outpost_upstream_oldest_unforwarded_age_seconds",
		"Age of the oldest record not yet forwarded, by its timestamp (device clock); 0 when nothing waits.", []string{"topic", "partition"}, nil)
	pausedDesc = prometheus.NewDesc("outpost_upstream_partition_paused",
		"1 while forwarding of the partition is paused by an error (see the log and publish_errors_total).", []string{"topic", "partition"}, nil)
)

// lagCollector computes lag at scrape time, so lag of partitions nobody
// forwards (paused, disconnected) is as fresh as the scrape.
type lagCollector struct{ f *Forwarder }

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagRecordsDesc
	ch <- lagBytesDesc
	ch <- oldestAgeDesc
	ch <- pausedDesc
}

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.f.Lag() {
		p := strconv.FormatInt(int64(l.Partition), 10)
		ch <- prometheus.MustNewConstMetric(lagRecordsDesc, prometheus.GaugeValue, float64(l.LagRecords), l.Topic, p)
		ch <- prometheus.MustNewConstMetric(lagBytesDesc, prometheus.GaugeValue, float64(l.LagBytes), l.Topic, p)
		ch <- prometheus.MustNewConstMetric(oldestAgeDesc, prometheus.GaugeValue, l.OldestUnforwardedAge.Seconds(), l.Topic, p)
		paused := 0.0
		if l.Error != "" {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, paused, l.Topic, p)
	}
}
