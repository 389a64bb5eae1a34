package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rig is a registry with the families the dashboard reads, and a clock.
type rig struct {
	reg       *prometheus.Registry
	ingest    *prometheus.CounterVec
	connected prometheus.Gauge
	end, lag  *prometheus.GaugeVec
	logBytes  prometheus.Gauge
	appended  prometheus.Counter
	written   prometheus.Counter
	fsync     prometheus.Histogram
	now       time.Time
}

func newRig(t *testing.T) *rig {
	r := &rig{reg: prometheus.NewRegistry(), now: time.Unix(1_800_000_000, 0)}
	r.ingest = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "outpost_mqtt_ingest_messages_total"}, []string{"qos"})
	r.connected = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_upstream_connected"})
	r.end = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outpost_log_end_offset"}, []string{"topic", "partition"})
	r.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "outpost_upstream_lag_records"}, []string{"topic", "partition"})
	r.logBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "outpost_log_bytes"})
	r.appended = prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_log_appended_records_total"})
	r.written = prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_node_disk_written_bytes_total"})
	r.fsync = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "outpost_log_fsync_seconds"})
	r.reg.MustRegister(r.ingest, r.connected, r.end, r.lag, r.logBytes, r.appended, r.written, r.fsync)
	return r
}

func (r *rig) snapshot(t *testing.T, d *Dashboard) Snapshot {
	t.Helper()
	var s Snapshot
	if err := json.Unmarshal(d.Snapshot(), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSnapshot: rates from counter deltas over the sample interval (and
// what durability costs: records per fsync, bytes written per record), the
// uplink's down time from the first sample that saw it down, forwarded =
// end - lag per partition, and the disk forecast against the budget.
func TestSnapshot(t *testing.T) {
	r := newRig(t)
	d, err := New(Config{Gatherer: r.reg, Now: func() time.Time { return r.now },
		Info: func() Info {
			return Info{Node: "pi-a", Site: "farm", Sync: "always", DiskBudget: 1 << 20, Upstream: true}
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.connected.Set(1)
	r.logBytes.Set(1000)
	r.now = r.now.Add(time.Second)
	d.sample()
	r.ingest.WithLabelValues("1").Add(300)
	r.ingest.WithLabelValues("0").Add(100)
	r.end.WithLabelValues("telemetry", "3").Set(500)
	r.lag.WithLabelValues("telemetry", "3").Set(120)
	r.connected.Set(0)
	r.logBytes.Set(1000 + 2*1024)
	r.appended.Add(400)
	r.written.Add(400 * 700)
	for range 40 {
		r.fsync.Observe(0.002)
	}
	r.now = r.now.Add(2 * time.Second)
	d.sample()
	s := r.snapshot(t, d)
	if s.RecordsPerFsync != 10 || s.WrittenPerRecord != 700 || s.FsyncMs < 1.99 || s.FsyncMs > 2.01 {
		t.Errorf("durability cost: %v records per fsync, %v bytes per record, fsync %v ms; want 10, 700, 2", s.RecordsPerFsync, s.WrittenPerRecord, s.FsyncMs)
	}
	if s.Ingest.QoS1 != 150 || s.Ingest.QoS0 != 50 || s.Ingest.Total != 200 {
		t.Errorf("rates %+v, want 150 QoS 1 and 50 QoS 0 per second", s.Ingest)
	}
	if s.Uplink.Connected || !s.Uplink.Configured || s.Uplink.DownSeconds != 0 || len(s.Warnings) == 0 {
		t.Errorf("uplink %+v warnings %q: want down, just now, with a warning", s.Uplink, s.Warnings)
	}
	if len(s.Partitions) != 1 || s.Partitions[0].Forwarded == nil || *s.Partitions[0].Forwarded != 380 || s.Uplink.LagRecords != 120 {
		t.Errorf("partitions %+v lag %v", s.Partitions, s.Uplink.LagRecords)
	}
	// From 0 bytes (the sample New took) to 3048 in the 3 s the history
	// spans: the rest of the 1 MiB budget lasts (1 MiB - 3048) / (3048/3) s.
	if want := (float64(1<<20) - 3048) / (3048.0 / 3); s.Disk.FullInSeconds < want-1 || s.Disk.FullInSeconds > want+1 {
		t.Errorf("full in %v s, want %v", s.Disk.FullInSeconds, want)
	}
	r.now = r.now.Add(5 * time.Second)
	d.sample()
	if s = r.snapshot(t, d); s.Uplink.DownSeconds != 5 || s.Ingest.Total != 0 {
		t.Errorf("down %v s, rate %v; want 5 s and 0", s.Uplink.DownSeconds, s.Ingest.Total)
	}
	r.connected.Set(1)
	d.sample()
	if s = r.snapshot(t, d); !s.Uplink.Connected || !s.Uplink.DownSince.IsZero() {
		t.Errorf("uplink back: %+v", s.Uplink)
	}
}

// TestHistoryBounded: the history never holds more than HistoryPoints.
func TestHistoryBounded(t *testing.T) {
	r := newRig(t)
	d, _ := New(Config{Gatherer: r.reg, Now: func() time.Time { return r.now }})
	for i := 0; i < HistoryPoints+50; i++ {
		r.now = r.now.Add(time.Second)
		d.sample()
	}
	if s := r.snapshot(t, d); len(s.History) != HistoryPoints {
		t.Fatalf("history of %d points, want %d", len(s.History), HistoryPoints)
	}
}

// TestEvents: a viewer gets the current snapshot at once and one per
// sample after it, as server-sent events; it leaves no viewer behind.
func TestEvents(t *testing.T) {
	r := newRig(t)
	d, _ := New(Config{Gatherer: r.reg, Interval: 20 * time.Millisecond})
	srv := httptest.NewServer(d.Routes()["GET /ui/events"])
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var times []time.Time
	for sc.Scan() && len(times) < 3 {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var s Snapshot
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &s); err != nil {
			t.Fatalf("event is not a snapshot: %v", err)
		}
		times = append(times, s.Time)
	}
	if len(times) < 3 || !times[2].After(times[1]) {
		t.Fatalf("events at %v: want three, newer each time", times)
	}
	if d.Viewers() != 1 {
		t.Fatalf("%d viewers while one stream is open", d.Viewers())
	}
	resp.Body.Close()
	cancel()
	for i := 0; i < 100 && d.Viewers() != 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if d.Viewers() != 0 {
		t.Fatalf("%d viewers left after the stream closed", d.Viewers())
	}
}
