package command

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	sent        *prometheus.CounterVec
	status      *prometheus.CounterVec
	foldDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_command_sent_total",
			Help: "Commands applications sent, by result: queued, duplicate, bad_request, or the reason they were rejected.",
		}, []string{"result"}),
		status: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_command_status_total",
			Help: "Status changes written into command states, by site, status and reason.",
		}, []string{"site", "status", "reason"}),
		foldDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_command_status_dropped_total",
			Help: "Status records core could not decode or apply (logged).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.sent, m.status, m.foldDropped} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
