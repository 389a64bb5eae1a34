package mqtt

import "github.com/prometheus/client_golang/prometheus"

// Ack reasons, the values of the reason label of outpost_mqtt_acks_total.
const (
	reasonSuccess   = "success"
	reasonBudget    = "disk_budget"
	reasonLogFailed = "log_failed"
	reasonTooLarge  = "too_large"
	reasonTimeout   = "timeout"
	reasonShutdown  = "shutdown"
	reasonDuplicate = "duplicate"
	reasonBadTopic  = "no_route"
	reasonCheck     = "check"
)

type metrics struct {
	ingestQoS  [3]prometheus.Counter
	ackReason  map[string]prometheus.Counter // resolved once: the hot path takes no label lookup
	ackSuccess prometheus.Counter            // ackReason[reasonSuccess], without the map lookup
	ingest     *prometheus.CounterVec
	acks       *prometheus.CounterVec
	dups       prometheus.Counter
	ackLatency prometheus.Histogram
	inflight   prometheus.Collector // reads Hook.pending: no gauge update per publish
	timeouts   prometheus.Counter

	checkRefused        prometheus.Counter
	checkRedirected     prometheus.Counter
	expiredBeforeFanout prometheus.Counter
	keepaliveRefused    prometheus.Counter
}

// newMetrics resolves the metrics; pending reads the publishes queued and
// not yet completed.
func newMetrics(reg prometheus.Registerer, pending func() float64) *metrics {
	m := &metrics{
		ingest: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_mqtt_ingest_messages_total",
			Help: "PUBLISH packets received from devices, by QoS.",
		}, []string{"qos"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_mqtt_acks_total",
			Help: "Publishes completed, by reason: success (durable; PUBACK/PUBREC 0x00 for QoS 1/2), disk_budget (0x97), log_failed (0x80), timeout, too_large (0x95), shutdown, duplicate (resend answered without a second append), no_route, check (refused by the check stage, with its code).",
		}, []string{"reason"}),
		dups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_mqtt_duplicates_total",
			Help: "DUP resends and QoS 2 retransmissions not appended a second time.",
		}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outpost_mqtt_ack_latency_seconds",
			Help:    "Time from receiving a QoS 1/2 PUBLISH to writing its acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		inflight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_mqtt_inflight_publishes",
			Help: "Publishes appended but not yet acknowledged, over all sessions.",
		}, pending),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_mqtt_ack_timeout_disconnects_total",
			Help: "Clients disconnected because a publish was not durable within the ack timeout.",
		}),
		checkRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_mqtt_check_refused_total",
			Help: "Publishes the check stage refused (not appended).",
		}),
		checkRedirected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_mqtt_check_redirected_total",
			Help: "Publishes the check stage sent to another log topic (a dead letter) instead of the routed one.",
		}),
		expiredBeforeFanout: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_mqtt_expired_before_fanout_total",
			Help: "Durable publishes not delivered to local subscribers because their Message Expiry Interval ran out while they were committed.",
		}),
		keepaliveRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_mqtt_keepalive_refused_total",
			Help: "MQTT 3.1.1 connections refused because they asked for a keepalive above mqtt.limits.keepalive_max (or none).",
		}),
	}
	for q := range m.ingestQoS {
		m.ingestQoS[q] = m.ingest.WithLabelValues(qosLabel(byte(q)))
	}
	m.ackReason = make(map[string]prometheus.Counter)
	for _, r := range []string{reasonSuccess, reasonBudget, reasonLogFailed, reasonTooLarge, reasonTimeout, reasonShutdown, reasonDuplicate, reasonBadTopic, reasonCheck, reasonNotReplicated} {
		m.ackReason[r] = m.acks.WithLabelValues(r)
	}
	m.ackSuccess = m.ackReason[reasonSuccess]
	if reg != nil {
		reg.MustRegister(m.ingest, m.acks, m.dups, m.ackLatency, m.inflight, m.timeouts,
			m.checkRefused, m.checkRedirected, m.expiredBeforeFanout, m.keepaliveRefused)
	}
	return m
}

func (m *metrics) ack(reason string) { m.ackReason[reason].Inc() }

func qosLabel(q byte) string {
	switch q {
	case 0:
		return "0"
	case 1:
		return "1"
	}
	return "2"
}
