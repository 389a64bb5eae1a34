package schema

import "github.com/prometheus/client_golang/prometheus"

// metrics are the registry's counters; registered on a
// prometheus.Registerer when one is given, working (unexported) otherwise.
type metrics struct {
	registrations prometheus.Counter
	refusals      prometheus.Counter
	invalid       prometheus.Counter
	casConflicts  prometheus.Counter
	storeErrors   prometheus.Counter
	collectors    []prometheus.Collector
}

func newMetrics(st *state) *metrics {
	m := &metrics{
		registrations: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_core_schema_registrations_total",
			Help: "New subject versions this core registered (a schema already registered under the subject is not counted)."}),
		refusals: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_core_schema_compatibility_refusals_total",
			Help: "Registrations refused as incompatible with earlier versions (HTTP 409)."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_core_schema_invalid_total",
			Help: "Registrations and checks refused because the schema does not parse or is too large (42201, 42209)."}),
		casConflicts: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_core_schema_cas_conflicts_total",
			Help: "KV compare-and-set writes retried because another core wrote the same key first."}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "outpost_core_schema_store_errors_total",
			Help: "KV reads and writes that failed (API error 50001), for example a full bucket."}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.collectors = []prometheus.Collector{m.registrations, m.refusals, m.invalid, m.casConflicts, m.storeErrors,
		gauge("outpost_core_schema_subjects", "Subjects with at least one version that is not deleted.", func() float64 {
			n, _, _ := st.counts()
			return float64(n)
		}),
		gauge("outpost_core_schema_ids", "Schema IDs in the registry (an ID is never removed).", func() float64 {
			_, n, _ := st.counts()
			return float64(n)
		}),
		gauge("outpost_core_schema_cache_bytes", "Bytes of KV values the registry holds in memory (its copy of the bucket).", func() float64 {
			_, _, b := st.counts()
			return float64(b)
		}),
	}
	return m
}
