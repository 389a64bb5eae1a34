package node

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/edge/log"
)

// registerBrokerMetrics exports mochi's own counters, which show when the
// limits bite: messages dropped for slow subscribers (max_pending_writes),
// outbound QoS messages dropped at max_inflight, sessions kept.
func registerBrokerMetrics(reg prometheus.Registerer, s *mochi.Server) {
	gauge := func(name, help string, v *int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(atomic.LoadInt64(v)) })
	}
	counter := func(name, help string, v *int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(atomic.LoadInt64(v)) })
	}
	reg.MustRegister(
		gauge("outpost_mqtt_clients_connected", "Clients past CONNECT.", &s.Info.ClientsConnected),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outpost_mqtt_sessions",
			Help: "Sessions the broker keeps, connected or not (bounded by mqtt.limits.session_expiry_max).",
		}, func() float64 { return float64(s.Clients.Len()) }),
		gauge("outpost_mqtt_subscriptions", "Active subscriptions.", &s.Info.Subscriptions),
		gauge("outpost_mqtt_retained_messages", "Retained messages.", &s.Info.Retained),
		gauge("outpost_mqtt_outbound_inflight", "QoS 1/2 messages in flight in mochi's inflight maps (outbound, and inbound QoS 2 awaiting PUBREL).", &s.Info.Inflight),
		counter("outpost_mqtt_messages_dropped_total", "Messages to subscribers dropped because their pending writes reached mqtt.limits.max_pending_writes.", &s.Info.MessagesDropped),
		counter("outpost_mqtt_inflight_dropped_total", "Outbound QoS 1/2 messages dropped at mqtt.limits.max_inflight.", &s.Info.InflightDropped),
		counter("outpost_mqtt_received_bytes_total", "Bytes received from MQTT clients.", &s.Info.BytesReceived),
		counter("outpost_mqtt_sent_bytes_total", "Bytes sent to MQTT clients.", &s.Info.BytesSent),
	)
}

// partitionCollector exports each partition's offsets and size at scrape
// time, from the log's own counters (no per-append cost).
type partitionCollector struct {
	log   *log.Log
	end   *prometheus.Desc
	start *prometheus.Desc
	bytes *prometheus.Desc
}

func newPartitionCollector(l *log.Log) *partitionCollector {
	labels := []string{"topic", "partition"}
	return &partitionCollector{
		log:   l,
		end:   prometheus.NewDesc("outpost_log_end_offset", "Next offset to be written (log end offset) of a partition.", labels, nil),
		start: prometheus.NewDesc("outpost_log_start_offset", "First readable offset of a partition (below it, deleted by retention).", labels, nil),
		bytes: prometheus.NewDesc("outpost_log_partition_bytes", "Bytes of a partition's segments and indexes.", labels, nil),
	}
}

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.end
	ch <- c.start
	ch <- c.bytes
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.log.Topics() {
		for _, p := range t.Partitions {
			part := strconv.Itoa(int(p.Partition))
			ch <- prometheus.MustNewConstMetric(c.end, prometheus.GaugeValue, float64(p.EndOffset), t.Name, part)
			ch <- prometheus.MustNewConstMetric(c.start, prometheus.GaugeValue, float64(p.StartOffset), t.Name, part)
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(p.Bytes), t.Name, part)
		}
	}
}

// registerDiskWrites exports what the node process made the kernel write
// to storage (/proc/self/io write_bytes: page-cache pages dirtied, counted
// once per page each time it goes from clean to dirty, which is how flash
// pays for it). Divided by outpost_log_appended_records_total it is the
// bytes written per record the journal exists to cut. Not on systems
// without /proc/self/io.
func registerDiskWrites(reg prometheus.Registerer) {
	if _, err := readWriteBytes(); err != nil {
		return
	}
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "outpost_node_disk_written_bytes_total",
		Help: "Bytes the node process caused to be written to storage (/proc/self/io write_bytes; the filesystem's own journal not included).",
	}, func() float64 {
		n, _ := readWriteBytes()
		return float64(n)
	}))
}

func readWriteBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("node: no write_bytes in /proc/self/io")
}
