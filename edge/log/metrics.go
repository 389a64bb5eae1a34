package log

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are created per Log and registered only on the injected
// Registerer: two logs in one process (tests) never collide.
type metrics struct {
	fsyncSeconds       prometheus.Histogram
	appendedRecords    prometheus.Counter
	bytes              prometheus.Gauge
	tornTails          prometheus.Counter
	tornUnsyncedFrames prometheus.Counter
	tornBytes          prometheus.Counter
	indexRebuilds      prometheus.Counter
	segmentsRolled     prometheus.Counter
	segmentsDeleted    *prometheus.CounterVec
	budgetRefused      prometheus.Counter
	partitionFailures  prometheus.Counter
	readErrors         prometheus.Counter
	holdRetained       *prometheus.GaugeVec
	holdOverridden     *prometheus.CounterVec

	journalCommits       prometheus.Counter
	journalBytes         prometheus.Counter
	journalCommitRecords prometheus.Histogram
	journalCheckpoints   prometheus.Counter
	checkpointSeconds    prometheus.Histogram
	journalReplayed      prometheus.Counter
	journalDirect        prometheus.Counter
	writtenBytes         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outpost_log_fsync_seconds",
			Help:    "Latency of fdatasync on log segments; SD cards show wear here first.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		appendedRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_appended_records_total",
			Help: "Records appended and durable under the sync policy.",
		}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_log_bytes",
			Help: "Bytes of all segments and indexes of the log (what the disk budget counts).",
		}),
		tornTails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_torn_tails_total",
			Help: "Damaged segment tails cut back at open.",
		}),
		tornUnsyncedFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_torn_unsynced_frames_total",
			Help: "Valid frames cut at open because they lay after a tear in a region no fdatasync had covered (a power cut that kept some unsynced pages and lost others).",
		}),
		tornBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_torn_bytes_total",
			Help: "Bytes cut from damaged segment tails at open.",
		}),
		indexRebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_index_rebuilds_total",
			Help: "Indexes rebuilt from their segment because they were missing or invalid.",
		}),
		segmentsRolled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_segments_rolled_total",
			Help: "Segments sealed and replaced by a new active segment.",
		}),
		segmentsDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_log_segments_deleted_total",
			Help: "Segments deleted, by reason: retention_bytes, retention_age, budget (no reader held it: already forwarded), budget_unforwarded (a reader still held it: data lost to the disk budget).",
		}, []string{"reason"}),
		budgetRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_budget_refused_appends_total",
			Help: "Appends refused because the node-wide disk budget was reached.",
		}),
		partitionFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_partition_failures_total",
			Help: "Partitions that failed a write or fsync and refuse appends until restart.",
		}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_read_errors_total",
			Help: "Reads that found a damaged frame.",
		}),
		holdRetained: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_log_hold_retained_bytes",
			Help: "Bytes that retention by bytes or age would have deleted but keeps because this holder still needs them, as of the last retention run (a segment two holders need counts for both).",
		}, []string{"holder"}),
		holdOverridden: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_log_hold_overridden_records_total",
			Help: "Records this holder still needed that the disk budget's delete-oldest policy deleted.",
		}, []string{"holder"}),
		journalCommits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_journal_commits_total",
			Help: "Journal commits: one fdatasync each, covering every partition's records of one commit window.",
		}),
		journalBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_journal_bytes_total",
			Help: "Bytes written to the journal, padding to page boundaries included.",
		}),
		journalCommitRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outpost_log_journal_commit_records",
			Help:    "Records made durable by one journal commit (one fdatasync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		journalCheckpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_journal_checkpoints_total",
			Help: "Journal files checkpointed (the segments they reached fdatasynced) so they can be written again.",
		}),
		checkpointSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outpost_log_journal_checkpoint_seconds",
			Help:    "Time to checkpoint one journal file.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		journalReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_journal_replayed_records_total",
			Help: "Records restored from the journal into their segments at open (a crash or power cut lost them from the segment's unsynced tail).",
		}),
		journalDirect: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_journal_direct_commits_total",
			Help: "Commits so large that they fdatasynced their segments instead of writing the journal (saturation: group commit as without the journal).",
		}),
		writtenBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_log_written_bytes_total",
			Help: "Bytes the log wrote to segments, indexes and the journal (what reaches the page cache; the disk writes whole pages: see outpost_node_disk_written_bytes_total).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.fsyncSeconds, m.appendedRecords, m.bytes, m.tornTails, m.tornUnsyncedFrames, m.tornBytes,
			m.indexRebuilds, m.segmentsRolled, m.segmentsDeleted, m.budgetRefused,
			m.partitionFailures, m.readErrors, m.holdRetained, m.holdOverridden,
			m.journalCommits, m.journalBytes, m.journalCommitRecords, m.journalCheckpoints, m.checkpointSeconds,
			m.journalReplayed, m.journalDirect, m.writtenBytes)
	}
	return m
}

func (m *metrics) addBytes(n int64) { m.bytes.Add(float64(n)) }
