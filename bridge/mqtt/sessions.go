package mqtt

import (
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// SessionCap bounds the sessions the broker keeps. mochi keeps a
// disconnected persistent session (MQTT 3.1.1 clean_session=false, or MQTT
// 5 with a session expiry) until it expires, at several KiB each, so
// without a cap a client that reconnects under new ids at the connection
// rate grows memory for a whole expiry period. At the cap, a new connection
// evicts the longest-disconnected session; if every session is connected,
// the connection is refused.
//
// Admit runs after authentication (the auth hook calls it), so that
// unauthenticated connections cannot evict anyone's session.
type SessionCap struct {
	server  *mochi.Server
	max     int
	forget  []func(*mochi.Client)
	logger  *slog.Logger
	evicted prometheus.Counter
	refused prometheus.Counter
}

// NewSessionCap returns the hook. forget is called for each evicted
// session's client, as mochi calls OnClientExpired, so that other hooks
// drop their state (Hook.OnClientExpired, the auth hook's).
func NewSessionCap(server *mochi.Server, max int, forget []func(*mochi.Client), logger *slog.Logger, reg prometheus.Registerer) *SessionCap {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &SessionCap{
		server: server, max: max, forget: forget, logger: logger,
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_mqtt_sessions_evicted_total",
			Help: "Disconnected sessions dropped early because the session cap (mqtt.limits.max_sessions) was reached.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_mqtt_sessions_refused_total",
			Help: "Connections refused because the session cap was reached by connected clients.",
		}),
	}
	if reg != nil {
		reg.MustRegister(c.evicted, c.refused)
	}
	return c
}

// SetForget replaces the functions called for evicted sessions; call it
// before the broker serves.
func (c *SessionCap) SetForget(forget []func(*mochi.Client)) { c.forget = forget }

// Admit makes room for an authenticated client's session, or reports
// that there is none.
func (c *SessionCap) Admit(cl *mochi.Client) bool {
	n := c.server.Clients.Len()
	if _, ok := c.server.Clients.Get(mochi.InlineClientId); ok {
		n-- // the broker's own client is not a session
	}
	if n < c.max {
		return true
	}
	if _, ok := c.server.Clients.Get(cl.ID); ok {
		return true // takes over its own session: no new one
	}
	var oldest *mochi.Client
	for _, other := range c.server.Clients.GetAll() {
		if other.Net.Inline || !other.Closed() {
			continue
		}
		if oldest == nil || other.StopTime() < oldest.StopTime() {
			oldest = other
		}
	}
	if oldest == nil {
		c.refused.Inc()
		c.logger.Warn("mqtt: session cap reached by connected clients; connection refused", "client", cl.ID, "max_sessions", c.max)
		return false
	}
	c.server.UnsubscribeClient(oldest)
	oldest.ClearInflights()
	for _, f := range c.forget {
		f(oldest)
	}
	c.server.Clients.Delete(oldest.ID)
	c.evicted.Inc()
	return true
}
