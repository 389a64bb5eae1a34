package ui

import (
	"sort"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Snapshot is one sample as the page reads it (GET /ui/snapshot, and each
// event of GET /ui/events). Counters are totals since the node started;
// rates are per second over the last Interval.
type Snapshot struct {
	Time     time.Time `json:"time"`
	Node     string    `json:"node"`
	Site     string    `json:"site"`
	Version  string    `json:"version"`
	Sync     string    `json:"sync"`
	Ready    bool      `json:"ready"`
	NotReady string    `json:"not_ready,omitempty"`
	// Warnings are what needs a person now, in plain words.
	Warnings []string `json:"warnings"`

	Ingest       Rates              `json:"ingest"`
	History      []Point            `json:"history"`
	AcksTotal    map[string]float64 `json:"acks_total"`
	AcksPerS     map[string]float64 `json:"acks_per_s"`
	RefusedTotal map[string]float64 `json:"refused_total"`
	AckLatencyMs float64            `json:"ack_latency_ms"`
	FsyncMs      float64            `json:"fsync_ms"`
	// RecordsPerFsync and WrittenPerRecord say what durability costs now
	// (between the last two samples): records each fdatasync made
	// durable, and bytes the node wrote to storage per record appended
	// (what wears an SD card). 0 when nothing was appended.
	RecordsPerFsync  float64 `json:"records_per_fsync"`
	WrittenPerRecord float64 `json:"disk_written_bytes_per_record"`
	Clients          float64 `json:"clients"`
	Connections      float64 `json:"connections"`

	// Devices are the MaxDevices that sent the most, of DevicesKnown.
	Devices      []Device `json:"devices"`
	DevicesKnown int      `json:"devices_known"`

	Uplink      Uplink      `json:"uplink"`
	Partitions  []Partition `json:"partitions"`
	Disk        Disk        `json:"disk"`
	Schema      []Subject   `json:"schema"`
	Downlink    Downlink    `json:"downlink"`
	Replication Replication `json:"replication"`
}

// Rates are messages per second received from devices, by QoS.
type Rates struct {
	Total float64 `json:"total"`
	QoS0  float64 `json:"qos0"`
	QoS1  float64 `json:"qos1"`
	QoS2  float64 `json:"qos2"`
}

// Point is one sample of the history.
type Point struct {
	T          int64   `json:"t"` // Unix milliseconds
	Rate       float64 `json:"rate"`
	LagRecords float64 `json:"lag_records"`
	LogBytes   float64 `json:"log_bytes"`
}

// Uplink is the forwarder's link to the centre.
type Uplink struct {
	Configured  bool      `json:"configured"`
	Connected   bool      `json:"connected"`
	DownSince   time.Time `json:"down_since,omitzero"`
	DownSeconds float64   `json:"down_seconds"`
	Reconnects  float64   `json:"reconnects"`
	LagRecords  float64   `json:"lag_records"`
	LagSeconds  float64   `json:"lag_seconds"` // the oldest unforwarded record's age
}

// Partition is one log partition's state.
type Partition struct {
	Topic      string   `json:"topic"`
	Partition  int      `json:"partition"`
	Start      float64  `json:"start"`
	End        float64  `json:"end"`
	Forwarded  *float64 `json:"forwarded,omitempty"` // end minus lag; absent without an uplink
	LagRecords float64  `json:"lag_records"`
	LagSeconds float64  `json:"lag_seconds"`
	Paused     bool     `json:"paused"`
	Bytes      float64  `json:"bytes"`
	HighWater  *float64 `json:"high_watermark,omitempty"` // with replication
	InSync     *float64 `json:"insync_followers,omitempty"`
	AppendPerS float64  `json:"append_per_s"`
}

// Disk is the log's use of the disk and when the budget will bite.
type Disk struct {
	LogBytes   float64 `json:"log_bytes"`
	Budget     int64   `json:"budget"`
	GrowthPerS float64 `json:"growth_bytes_per_s"`
	// FullInSeconds is when the budget is reached at the growth of the
	// last minutes; -1 when it never is (no budget, or not growing).
	FullInSeconds float64 `json:"full_in_seconds"`
}

// Subject is one schema subject's checks at this node.
type Subject struct {
	Subject    string  `json:"subject"`
	Checked    float64 `json:"checked"`
	Violations float64 `json:"violations"`
}

// Downlink is the commands this node holds.
type Downlink struct {
	Queued float64 `json:"queued"`
}

// Replication is the site replication state of this node's partitions.
type Replication struct {
	Configured      bool    `json:"configured"`
	UnderReplicated float64 `json:"under_replicated"`
	AcksWaiting     float64 `json:"acks_waiting"`
	PeersConnected  float64 `json:"peers_connected"`
}

// sampleRaw is what one Gather yields, keyed for lookup.
type sampleRaw struct {
	at      time.Time
	ingest  map[string]float64 // qos -> total
	acks    map[string]float64 // reason -> total
	refused map[string]float64
	// histogram sums and counts
	ackSum, ackCount     float64
	fsyncSum, fsyncCount float64
	scalar               map[string]float64 // unlabelled gauges and counters
	seen                 map[string]bool    // families present
	parts                map[partKey]*partRaw
	checked              map[string]float64
	violations           map[string]float64
}

type partKey struct {
	topic string
	part  int
}

type partRaw struct {
	start, end, bytes, lag, age, paused float64
	hw, insync                          *float64
	hasLag                              bool
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// readRaw picks the families the dashboard shows out of a Gather.
func readRaw(mfs []*dto.MetricFamily) *sampleRaw {
	r := &sampleRaw{
		ingest: map[string]float64{}, acks: map[string]float64{}, refused: map[string]float64{},
		scalar: map[string]float64{}, seen: map[string]bool{}, parts: map[partKey]*partRaw{},
		checked: map[string]float64{}, violations: map[string]float64{},
	}
	part := func(m *dto.Metric) *partRaw {
		p, _ := strconv.Atoi(label(m, "partition"))
		k := partKey{label(m, "topic"), p}
		if r.parts[k] == nil {
			r.parts[k] = &partRaw{}
		}
		return r.parts[k]
	}
	for _, mf := range mfs {
		name := mf.GetName()
		r.seen[name] = true
		for _, m := range mf.GetMetric() {
			v := value(m)
			switch name {
			case "outpost_mqtt_ingest_messages_total":
				r.ingest[label(m, "qos")] += v
			case "outpost_mqtt_acks_total":
				r.acks[label(m, "reason")] += v
			case "outpost_mqtt_connections_refused_total", "outpost_mqtt_auth_failures_total":
				r.refused[label(m, "reason")] += v
			case "outpost_mqtt_keepalive_refused_total":
				r.refused["keepalive"] += v
			case "outpost_mqtt_ack_latency_seconds":
				r.ackSum, r.ackCount = m.GetHistogram().GetSampleSum(), float64(m.GetHistogram().GetSampleCount())
			case "outpost_log_fsync_seconds":
				r.fsyncSum, r.fsyncCount = m.GetHistogram().GetSampleSum(), float64(m.GetHistogram().GetSampleCount())
			case "outpost_log_end_offset":
				part(m).end = v
			case "outpost_log_start_offset":
				part(m).start = v
			case "outpost_log_partition_bytes":
				part(m).bytes = v
			case "outpost_upstream_lag_records":
				p := part(m)
				p.lag, p.hasLag = v, true
			case "outpost_upstream_oldest_unforwarded_age_seconds":
				part(m).age = v
			case "outpost_upstream_partition_paused":
				part(m).paused = v
			case "outpost_replica_high_watermark":
				part(m).hw = &v
			case "outpost_replica_insync_followers":
				part(m).insync = &v
			case "outpost_replica_connected":
				r.scalar[name] += v
			case "outpost_schema_checked_total":
				r.checked[label(m, "subject")] += v
			case "outpost_schema_violations_total":
				r.violations[label(m, "subject")] += v
			default:
				if len(m.GetLabel()) == 0 {
					r.scalar[name] = v
				}
			}
		}
	}
	return r
}

// compute turns a raw sample into a Snapshot, using the previous sample
// for rates and the history for the chart and forecasts. d.mu is held.
func (d *Dashboard) compute(now time.Time, r *sampleRaw, info Info, notReady string) Snapshot {
	r.at = now
	s := Snapshot{
		Time: now.UTC(), Node: info.Node, Site: info.Site, Version: info.Version, Sync: info.Sync,
		Ready: notReady == "", NotReady: notReady, Warnings: []string{},
		AcksTotal: r.acks, AcksPerS: map[string]float64{}, RefusedTotal: r.refused,
		Clients: r.scalar["outpost_mqtt_clients_connected"], Connections: r.scalar["outpost_mqtt_connections"],
		Partitions: []Partition{}, Schema: []Subject{},
	}
	prev := d.prev
	var dt float64
	if prev != nil {
		dt = now.Sub(prev.at).Seconds()
	}
	rate := func(cur, old float64) float64 {
		if dt <= 0 || cur < old {
			return 0
		}
		return (cur - old) / dt
	}
	if prev != nil {
		s.Ingest.QoS0 = rate(r.ingest["0"], prev.ingest["0"])
		s.Ingest.QoS1 = rate(r.ingest["1"], prev.ingest["1"])
		s.Ingest.QoS2 = rate(r.ingest["2"], prev.ingest["2"])
		s.Ingest.Total = s.Ingest.QoS0 + s.Ingest.QoS1 + s.Ingest.QoS2
		for reason, v := range r.acks {
			s.AcksPerS[reason] = rate(v, prev.acks[reason])
		}
		if n := r.ackCount - prev.ackCount; n > 0 {
			s.AckLatencyMs = (r.ackSum - prev.ackSum) / n * 1000
		}
		if n := r.fsyncCount - prev.fsyncCount; n > 0 {
			s.FsyncMs = (r.fsyncSum - prev.fsyncSum) / n * 1000
		}
		if recs := r.scalar["outpost_log_appended_records_total"] - prev.scalar["outpost_log_appended_records_total"]; recs > 0 {
			if n := r.fsyncCount - prev.fsyncCount; n > 0 {
				s.RecordsPerFsync = recs / n
			}
			if w := r.scalar["outpost_node_disk_written_bytes_total"] - prev.scalar["outpost_node_disk_written_bytes_total"]; w > 0 {
				s.WrittenPerRecord = w / recs
			}
		}
	}

	// Uplink.
	s.Uplink.Configured = info.Upstream || r.seen["outpost_upstream_connected"]
	if s.Uplink.Configured {
		s.Uplink.Connected = r.scalar["outpost_upstream_connected"] == 1
		s.Uplink.Reconnects = r.scalar["outpost_upstream_reconnects_total"]
		switch {
		case s.Uplink.Connected:
			d.down = time.Time{}
		case d.down.IsZero():
			d.down = now
		}
		if !d.down.IsZero() {
			s.Uplink.DownSince = d.down.UTC()
			s.Uplink.DownSeconds = now.Sub(d.down).Seconds()
			s.Warnings = append(s.Warnings, "The uplink to the centre is down: records wait on this node's disk and are sent when it returns.")
		}
	}

	// Partitions, in topic and partition order.
	keys := make([]partKey, 0, len(r.parts))
	for k := range r.parts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].topic != keys[j].topic {
			return keys[i].topic < keys[j].topic
		}
		return keys[i].part < keys[j].part
	})
	paused := 0
	for _, k := range keys {
		pr := r.parts[k]
		p := Partition{Topic: k.topic, Partition: k.part, Start: pr.start, End: pr.end, Bytes: pr.bytes,
			LagRecords: pr.lag, LagSeconds: pr.age, Paused: pr.paused == 1, HighWater: pr.hw, InSync: pr.insync}
		if pr.hasLag {
			f := pr.end - pr.lag
			p.Forwarded = &f
		}
		if prev != nil {
			if pp := prev.parts[k]; pp != nil {
				p.AppendPerS = rate(pr.end, pp.end)
			}
		}
		if p.Paused {
			paused++
		}
		s.Uplink.LagRecords += pr.lag
		s.Uplink.LagSeconds = max(s.Uplink.LagSeconds, pr.age)
		s.Partitions = append(s.Partitions, p)
	}
	if paused > 0 {
		s.Warnings = append(s.Warnings, strconv.Itoa(paused)+" partition(s) paused forwarding after an error: see the node's log.")
	}
	if f := r.scalar["outpost_log_partition_failures_total"]; f > 0 {
		s.Warnings = append(s.Warnings, "A partition failed a write or fsync and refuses appends until the node restarts: check the disk.")
	}

	// Disk and its forecast over the history.
	s.Disk = Disk{LogBytes: r.scalar["outpost_log_bytes"], Budget: info.DiskBudget, FullInSeconds: -1}
	d.history = append(d.history, Point{T: now.UnixMilli(), Rate: s.Ingest.Total, LagRecords: s.Uplink.LagRecords, LogBytes: s.Disk.LogBytes})
	if len(d.history) > HistoryPoints {
		d.history = append(d.history[:0], d.history[len(d.history)-HistoryPoints:]...)
	}
	if first := d.history[0]; len(d.history) > 1 {
		if span := float64(now.UnixMilli()-first.T) / 1000; span > 0 {
			s.Disk.GrowthPerS = (s.Disk.LogBytes - first.LogBytes) / span
		}
	}
	if s.Disk.Budget > 0 && s.Disk.GrowthPerS > 0 {
		s.Disk.FullInSeconds = max(0, (float64(s.Disk.Budget)-s.Disk.LogBytes)/s.Disk.GrowthPerS)
		if s.Disk.FullInSeconds < 24*3600 {
			s.Warnings = append(s.Warnings, "The disk budget will be reached within a day at the current rate.")
		}
	}
	s.History = append([]Point(nil), d.history...)

	for subj, c := range r.checked {
		s.Schema = append(s.Schema, Subject{Subject: subj, Checked: c, Violations: r.violations[subj]})
	}
	sort.Slice(s.Schema, func(i, j int) bool { return s.Schema[i].Subject < s.Schema[j].Subject })
	s.Downlink.Queued = r.scalar["outpost_downlink_queued"]
	s.Replication = Replication{
		Configured:      r.seen["outpost_replica_owner_epoch"],
		UnderReplicated: r.scalar["outpost_replica_under_replicated_partitions"],
		AcksWaiting:     r.scalar["outpost_replica_acks_waiting"],
		PeersConnected:  r.scalar["outpost_replica_connected"],
	}
	if s.Replication.UnderReplicated > 0 {
		s.Warnings = append(s.Warnings, "Some partitions have fewer in-sync replicas than replication.min_insync: a peer is down or behind.")
	}
	if !s.Ready {
		s.Warnings = append([]string{"Not ready: " + notReady}, s.Warnings...)
	}
	d.prev = r
	return s
}

// MaxDevices bounds the devices a snapshot lists: the page shows the
// busiest; the total is in DevicesKnown.
const MaxDevices = 100

// Device is one device the broker knows.
type Device struct {
	ID        string    `json:"id"`
	Protocol  byte      `json:"protocol"` // 3, 4 (3.1.1) or 5
	Address   string    `json:"address"`
	Connected bool      `json:"connected"`
	Messages  int64     `json:"messages"`
	LastSeen  time.Time `json:"last_seen,omitzero"` // its last publish
	// LastSeenSeconds is how long ago that was (-1: never published).
	LastSeenSeconds float64 `json:"last_seen_seconds"`
}

// topDevices sorts by messages (then id) and keeps MaxDevices.
func topDevices(ds []Device, now time.Time) []Device {
	sort.Slice(ds, func(i, j int) bool {
		if ds[i].Messages != ds[j].Messages {
			return ds[i].Messages > ds[j].Messages
		}
		return ds[i].ID < ds[j].ID
	})
	if len(ds) > MaxDevices {
		ds = ds[:MaxDevices]
	}
	out := make([]Device, len(ds))
	for i, d := range ds {
		d.LastSeenSeconds = -1
		if !d.LastSeen.IsZero() {
			d.LastSeenSeconds = max(0, now.Sub(d.LastSeen).Seconds())
		}
		out[i] = d
	}
	return out
}
