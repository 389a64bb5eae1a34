package schemacheck

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Violation reasons (the reason label of outpost_schema_violations_total).
const (
	reasonInvalid = "invalid"        // the payload fails its schema
	reasonUnknown = "unknown_schema" // the schema is not known at the node (on_unknown_schema: refuse)
	reasonBadID   = "bad_schema_id"  // the publish names a schema ID that is not a decimal ID
)

// What happened to a violating publish (the action label).
const (
	actionRefused      = "refused"       // MQTT 5 QoS 1/2: PUBACK/PUBREC 0x99
	actionDeadLettered = "dead_lettered" // appended to <topic>.dead
)

type metrics struct {
	checked    *prometheus.CounterVec
	unchecked  *prometheus.CounterVec
	violations *prometheus.CounterVec
}

// topicCounters are one subject's counters, resolved once per Update so a
// check does no label lookup on success.
type topicCounters struct {
	checked, unchecked prometheus.Counter
	m                  *metrics
	subject            string
}

func (t *topicCounters) violations(reason, action string) prometheus.Counter {
	return t.m.violations.WithLabelValues(t.subject, reason, action)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		checked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_schema_checked_total",
			Help: "Publishes to topics with a schema that the edge checked, by subject.",
		}, []string{"subject"}),
		unchecked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_schema_unchecked_total",
			Help: "Publishes appended unchecked because their schema was unknown at the node (on_unknown_schema: accept), by subject.",
		}, []string{"subject"}),
		violations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_schema_violations_total",
			Help: "Publishes that failed their schema check, by subject, reason (invalid, unknown_schema, bad_schema_id) and action (refused with 0x99, dead_lettered to <topic>.dead).",
		}, []string{"subject", "reason", "action"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.checked, m.unchecked, m.violations} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("schemacheck: metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) forTopic(subject string) *topicCounters {
	return &topicCounters{checked: m.checked.WithLabelValues(subject), unchecked: m.unchecked.WithLabelValues(subject), m: m, subject: subject}
}

// ViolationsCounter returns the violation counter of subject, reason and
// action (for tests and the node's own reporting).
func (c *Checker) ViolationsCounter(subject, reason, action string) prometheus.Counter {
	return c.m.violations.WithLabelValues(subject, reason, action)
}
