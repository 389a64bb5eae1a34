package downlink

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	queued   prometheus.Gauge
	taken    *prometheus.CounterVec
	finished *prometheus.CounterVec
	pulls    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_downlink_queued",
			Help: "Commands queued at this node, not final yet.",
		}),
		taken: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_downlink_taken_total",
			Help: "Commands taken from the centre, by result: queued, duplicate (a redelivery, dropped), expired, rejected.",
		}, []string{"result"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_downlink_status_total",
			Help: "Status changes at this node after at_edge, by status (delivered, succeeded, failed, expired, rejected) and reason.",
		}, []string{"status", "reason"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_downlink_pulls_total",
			Help: "Pulls from the centre's commands stream, by result: ok or error.",
		}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.queued, m.taken, m.finished, m.pulls} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
