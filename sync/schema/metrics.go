package schema

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	watching prometheus.Gauge
	subjects prometheus.Gauge
	schemas  prometheus.Gauge
	updates  prometheus.Counter
	errors   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		watching: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_schema_sync_watching",
			Help: "1 while the node's copy of the schema registry is in step with the centre (watch live), else 0.",
		}),
		subjects: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_schema_sync_subjects",
			Help: "Subjects in the node's copy of the schema registry.",
		}),
		schemas: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_schema_sync_schemas",
			Help: "Schemas in the node's copy of the schema registry.",
		}),
		updates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_schema_sync_updates_total",
			Help: "Changes to the node's copy of the schema registry, written to the metadata store and applied to the checks.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_schema_sync_errors_total",
			Help: "Schema sync sessions that failed while the uplink was up, and unreadable registry values.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.watching, m.subjects, m.schemas, m.updates, m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("schema: metrics: %w", err)
			}
		}
	}
	return m, nil
}
