package mqtt

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits bound what connections cost, including before CONNECT, where mochi
// applies none of its own: it sets no read deadline and allocates whatever
// length the first packet announces.
type Limits struct {
	// MaxConnections caps open connections, counting those that have not
	// sent CONNECT yet; more are refused at accept (see refuse.go).
	MaxConnections int
	// ConnectRate is the sustained rate of new connections per second
	// (token bucket); 0 means unlimited.
	ConnectRate float64
	// ConnectBurst is the token bucket's depth.
	ConnectBurst int
	// ConnectTimeout is how long a new connection may take to deliver its
	// CONNECT (TLS handshake included); after CONNECT, mochi's keepalive
	// deadline applies.
	ConnectTimeout time.Duration
	// MaxConnectBytes caps the announced length of the first packet, which
	// must be a CONNECT.
	MaxConnectBytes int
}

// DefaultLimits returns the defaults as a fresh value.
func DefaultLimits() Limits {
	return Limits{
		MaxConnections:  1000,
		ConnectRate:     200,
		ConnectBurst:    500,
		ConnectTimeout:  10 * time.Second,
		MaxConnectBytes: 64 << 10,
	}
}

// Gate admits connections for every listener of a node under one set of
// Limits.
type Gate struct {
	limits Limits

	mu     sync.Mutex
	tokens float64   // mu
	last   time.Time // mu

	open    atomic.Int64
	gauge   prometheus.Gauge
	refused *prometheus.CounterVec
	// refusing holds a token per refused connection being answered with a
	// CONNACK (refuse.go): beyond it, refused connections are just closed.
	refusing chan struct{}
}

// NewGate returns a gate; reg receives its metrics (nil registers nothing).
func NewGate(l Limits, reg prometheus.Registerer) *Gate {
	g := &Gate{
		limits: l,
		tokens: float64(l.ConnectBurst),
		last:   time.Now(),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_mqtt_connections",
			Help: "Open MQTT connections, including those that have not sent CONNECT yet.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_mqtt_connections_refused_total",
			Help: "Connections refused by the limits, by reason: max_connections, connect_rate (both answered with a CONNACK refusal when the CONNECT arrives in time), first_packet (not a CONNECT, or longer than the limit).",
		}, []string{"reason"}),
		refusing: make(chan struct{}, maxRefusing),
	}
	if reg != nil {
		reg.MustRegister(g.gauge, g.refused)
	}
	return g
}

// Open returns the number of open connections.
func (g *Gate) Open() int64 { return g.open.Load() }

func (g *Gate) admit() string {
	if g.limits.MaxConnections > 0 && g.open.Load() >= int64(g.limits.MaxConnections) {
		return "max_connections"
	}
	if g.limits.ConnectRate > 0 {
		g.mu.Lock()
		now := time.Now()
		g.tokens = min(float64(g.limits.ConnectBurst), g.tokens+now.Sub(g.last).Seconds()*g.limits.ConnectRate)
		g.last = now
		ok := g.tokens >= 1
		if ok {
			g.tokens--
		}
		g.mu.Unlock()
		if !ok {
			return "connect_rate"
		}
	}
	return ""
}

// gatedListener applies the gate at accept and counts connections until
// they close.
type gatedListener struct {
	net.Listener
	g *Gate
	// refuse answers a refused connection, or reports false and leaves it
	// to be closed; nil closes every refused connection.
	refuse func(c net.Conn, reason string) bool
}

func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if reason := l.g.admit(); reason != "" {
			l.g.refused.WithLabelValues(reason).Inc()
			if l.refuse == nil || !l.refuse(c, reason) {
				c.Close()
			}
			continue
		}
		l.g.open.Add(1)
		l.g.gauge.Inc()
		if d := l.g.limits.ConnectTimeout; d > 0 {
			_ = c.SetDeadline(time.Now().Add(d))
		}
		return &countedConn{Conn: c, g: l.g}, nil
	}
}

type countedConn struct {
	net.Conn
	g    *Gate
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.g.open.Add(-1)
		c.g.gauge.Dec()
	})
	return c.Conn.Close()
}
