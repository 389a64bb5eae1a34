package peer

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the outpost_replica_* metrics (docs/metrics.md), shared by a
// node's owner and its followers.
type Metrics struct {
	connected      *prometheus.GaugeVec   // peer, role
	connects       *prometheus.CounterVec // peer, role, result
	fetchedRecords *prometheus.CounterVec // owner
	followerEnd    *prometheus.GaugeVec   // owner, topic, partition
	followerLag    *prometheus.GaugeVec   // owner, topic, partition
	stalled        *prometheus.GaugeVec   // owner
	servedRecords  *prometheus.CounterVec // follower
	hw             *prometheus.GaugeVec   // topic, partition
	inSync         *prometheus.GaugeVec   // topic, partition
	underRep       prometheus.Gauge
	epoch          prometheus.Gauge
	acks           *prometheus.CounterVec // result
	acksWaiting    prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg; a nil reg
// registers nothing (the metrics still count, unseen).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_replica_connected",
			Help: "1 while a peer link is up, by peer and this node's role on it (owner: the peer follows us; follower: we follow the peer).",
		}, []string{"peer", "role"}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_replica_connects_total",
			Help: "Peer link handshakes, by peer, role and result (ok, auth, tls, version, epoch, error).",
		}, []string{"peer", "role", "result"}),
		fetchedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_replica_fetched_records_total",
			Help: "Records this node appended (durably) to its replica of an owner's partitions.",
		}, []string{"owner"}),
		followerEnd: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_replica_end_offset",
			Help: "End offset of this node's replica of an owner's partition.",
		}, []string{"owner", "topic", "partition"}),
		followerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_replica_lag_records",
			Help: "Records the owner had that this node's replica had not, at the last fetch.",
		}, []string{"owner", "topic", "partition"}),
		stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_replica_stalled_partitions",
			Help: "Replica partitions this node stopped copying because they disagree with the owner and need an operator (diverged past what the epoch history allows, or below the owner's start).",
		}, []string{"owner"}),
		servedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_replica_served_records_total",
			Help: "Records this node sent to a follower.",
		}, []string{"follower"}),
		hw: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_replica_high_watermark",
			Help: "High watermark of this node's own partition: the lowest end among the owner and its in-sync followers.",
		}, []string{"topic", "partition"}),
		inSync: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_replica_insync_followers",
			Help: "Followers in sync for this node's own partition (fetched up to the owner's end within replication lag_max).",
		}, []string{"topic", "partition"}),
		underRep: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_replica_under_replicated_partitions",
			Help: "This node's own partitions with fewer in-sync followers than replication.min_insync.",
		}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_replica_acks_total",
			Help: "Acknowledgements decided under replication.acks: all, by result: replicated (on every in-sync follower), degraded (too few in sync, acknowledged on local durability), refused (too few in sync, policy refuse).",
		}, []string{"result"}),
		acksWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_replica_acks_waiting",
			Help: "Acknowledgements held until followers have the record (replication.acks: all).",
		}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_replica_owner_epoch",
			Help: "This node's owner epoch: bumped and persisted at every start.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.connects, m.fetchedRecords, m.followerEnd, m.followerLag,
			m.stalled, m.servedRecords, m.hw, m.inSync, m.underRep, m.epoch, m.acks, m.acksWaiting)
	}
	return m
}

func partLabel(p int32) string { return strconv.Itoa(int(p)) }
