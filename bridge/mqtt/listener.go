package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/prometheus/client_golang/prometheus"
)

// Listener types.
const (
	TypeTCP = "tcp"
	TypeTLS = "tls"
	TypeWS  = "ws"
	TypeWSS = "wss"
)

// Limits bound what connections cost, including before CONNECT, where mochi
// applies none of its own: it sets no read deadline and allocates whatever
// length the first packet announces.
type Limits struct {
	// MaxConnections caps open connections, counting those that have not
	// sent CONNECT yet; more are closed at accept.
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
			Help: "Connections closed by the limits, by reason: max_connections, connect_rate, first_packet (not a CONNECT, or longer than the limit).",
		}, []string{"reason"}),
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
}

func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if reason := l.g.admit(); reason != "" {
			l.g.refused.WithLabelValues(reason).Inc()
			c.Close()
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

// errFirstPacket: the first packet is not a CONNECT or announces more
// bytes than Limits.MaxConnectBytes.
var errFirstPacket = errors.New("mqtt: first packet is not an acceptable CONNECT")

// firstPacket checks the fixed header of the first MQTT packet as the
// bytes pass, before mochi allocates the announced length.
type firstPacket struct {
	net.Conn
	g      *Gate
	max    int
	done   bool
	pos    int // bytes of the fixed header seen
	length int
	mult   int
	// burst holds the connection's QoS 0 publishes not yet appended; the
	// ingest hook sets it on the first, from the reader goroutine, the
	// only one that reads.
	burst *burst

	// Read-ahead, used while the connection is busy (see readAheadBytes).
	pool     *sync.Pool // of *[]byte of readAheadBytes; nil: no read-ahead
	ahead    *[]byte    // from pool while busy, else nil
	off, end int        // unread bytes of *ahead
	aheadErr error      // the error of the read that filled ahead, after its bytes
	full     bool       // the last network read filled its buffer: more is waiting
}

// readAheadBytes is what a busy connection reads from the network at
// once. mochi reads through a 2 KiB buffer: for a device streaming small
// publishes that is one system call, and one QoS 0 burst, per 15 or so
// messages. A connection whose last read filled its buffer (more bytes are
// waiting) reads 16 KiB into a buffer from the listener's pool instead, and
// gives it back once a read comes back short, so idle connections hold
// none (but for one that went quiet right after a full read: it holds the
// buffer until its next read returns).
const readAheadBytes = 16 << 10

func (f *firstPacket) Read(p []byte) (int, error) {
	if f.off < f.end {
		n := copy(p, (*f.ahead)[f.off:f.end])
		f.off += n
		if f.off == f.end && (!f.full || f.aheadErr != nil) {
			f.release()
		}
		return f.pass(p[:n], nil)
	}
	if err := f.aheadErr; err != nil {
		f.aheadErr = nil
		f.release()
		return 0, err
	}
	// mochi's reader comes back for more bytes once it has processed what
	// it had: the end of a burst, appended before the read blocks.
	f.burst.flush()
	if f.full && f.pool != nil && len(p) < readAheadBytes {
		if f.ahead == nil {
			f.ahead = f.pool.Get().(*[]byte)
		}
		n, err := f.Conn.Read(*f.ahead)
		f.full = n == len(*f.ahead)
		m := copy(p, (*f.ahead)[:n])
		f.off, f.end = m, n
		if m < n {
			f.aheadErr, err = err, nil // after the bytes
		}
		if f.off == f.end && (!f.full || err != nil) {
			f.release()
		}
		return f.pass(p[:m], err)
	}
	f.release() // drained; a big read goes straight into p
	n, err := f.Conn.Read(p)
	f.full = n == len(p)
	return f.pass(p[:n], err)
}

// release gives the read-ahead buffer back; its bytes are all read.
func (f *firstPacket) release() {
	if f.ahead != nil {
		f.pool.Put(f.ahead)
		f.ahead, f.off, f.end = nil, 0, 0
	}
}

// pass checks the bytes handed to mochi while the first packet's header
// goes by.
func (f *firstPacket) pass(b []byte, err error) (int, error) {
	n := len(b)
	if !f.done && n > 0 {
		if e := f.scan(b); e != nil {
			f.g.refused.WithLabelValues("first_packet").Inc()
			f.Conn.Close()
			return 0, e
		}
	}
	return n, err
}

func (f *firstPacket) scan(b []byte) error {
	for _, c := range b {
		if f.done {
			return nil
		}
		if f.pos == 0 {
			if c>>4 != 1 { // CONNECT
				return errFirstPacket
			}
			f.pos, f.mult = 1, 1
			continue
		}
		f.length += int(c&0x7f) * f.mult
		f.mult *= 128
		f.pos++
		if f.length > f.max {
			return fmt.Errorf("%w: announces %d bytes, limit %d", errFirstPacket, f.length, f.max)
		}
		if c&0x80 == 0 {
			f.done = true
		} else if f.pos > 4 {
			return errFirstPacket
		}
	}
	return nil
}

// ConnectionState exposes the TLS state of a TLS connection to the auth hook.
func (f *firstPacket) ConnectionState() tls.ConnectionState {
	if t, ok := f.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return t.ConnectionState()
	}
	return tls.ConnectionState{}
}

// ListenerConfig configures a Listener.
type ListenerConfig struct {
	// ID names the listener (clients' Net.Listener, ACL anonymous rules).
	ID string
	// Type is tcp, tls, ws or wss.
	Type string
	// Address is host:port; port 0 picks a free one (see Address).
	Address string
	// TLS is required for tls and wss.
	TLS *tls.Config
	// Gate applies the connection limits; required.
	Gate *Gate
}

// Listener is a mochi listener with the Gate applied, which can stop
// accepting without closing its clients (for a graceful shutdown).
type Listener struct {
	cfg  ListenerConfig
	pool sync.Pool // read-ahead buffers (see readAheadBytes)
	ln   net.Listener
	http *http.Server
	log  *slog.Logger
	end  atomic.Bool
	wg   sync.WaitGroup
}

var _ listeners.Listener = (*Listener)(nil)

// NewListener checks the config; the address is bound by Init.
func NewListener(cfg ListenerConfig) (*Listener, error) {
	switch cfg.Type {
	case TypeTCP, TypeWS:
	case TypeTLS, TypeWSS:
		if cfg.TLS == nil {
			return nil, fmt.Errorf("mqtt: listener %s: type %s needs a TLS config", cfg.ID, cfg.Type)
		}
	default:
		return nil, fmt.Errorf("mqtt: listener %s: type %q is not one of tcp, tls, ws, wss", cfg.ID, cfg.Type)
	}
	if cfg.Gate == nil {
		return nil, fmt.Errorf("mqtt: listener %s: Gate: required", cfg.ID)
	}
	l := &Listener{cfg: cfg}
	l.pool.New = func() any {
		b := make([]byte, readAheadBytes)
		return &b
	}
	return l, nil
}

// ID returns the listener id.
func (l *Listener) ID() string { return l.cfg.ID }

// Address returns the bound address once Init has run.
func (l *Listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.cfg.Address
}

// Protocol returns the listener type.
func (l *Listener) Protocol() string { return l.cfg.Type }

// Init binds the address.
func (l *Listener) Init(log *slog.Logger) error {
	l.log = log
	ln, err := net.Listen("tcp", l.cfg.Address)
	if err != nil {
		return fmt.Errorf("mqtt: listener %s: %w", l.cfg.ID, err)
	}
	l.ln = &gatedListener{Listener: ln, g: l.cfg.Gate}
	return nil
}

// Serve accepts connections until the listener is closed.
func (l *Listener) Serve(establish listeners.EstablishFn) {
	switch l.cfg.Type {
	case TypeWS, TypeWSS:
		l.serveWS(establish)
		return
	}
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, typically: keep the listener alive
			// and try again, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("mqtt: accept failed; retrying", "listener", l.cfg.ID, "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if l.cfg.Type == TypeTLS {
			c = tls.Server(c, l.cfg.TLS)
		}
		fc := &firstPacket{Conn: c, g: l.cfg.Gate, max: l.cfg.Gate.limits.MaxConnectBytes, pool: &l.pool}
		if fc.max <= 0 {
			fc.done = true
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer fc.Close()
			if err := establish(l.cfg.ID, fc); err != nil && !errors.Is(err, io.EOF) {
				l.log.Debug("mqtt: connection ended", "listener", l.cfg.ID, "err", err)
			}
		}()
	}
}

func (l *Listener) serveWS(establish listeners.EstablishFn) {
	up := &websocket.Upgrader{
		Subprotocols: []string{"mqtt"},
		// Devices and gateways are not browsers; an Origin check would only
		// block dashboards served from elsewhere.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if d := l.cfg.Gate.limits.ConnectTimeout; d > 0 {
			// net/http may have cleared the accept-time deadline.
			_ = ws.UnderlyingConn().SetDeadline(time.Now().Add(d))
		}
		fc := &firstPacket{Conn: &wsConn{Conn: ws.UnderlyingConn(), c: ws}, g: l.cfg.Gate, max: l.cfg.Gate.limits.MaxConnectBytes, pool: &l.pool}
		if fc.max <= 0 {
			fc.done = true
		}
		if err := establish(l.cfg.ID, fc); err != nil && !errors.Is(err, io.EOF) {
			l.log.Debug("mqtt: connection ended", "listener", l.cfg.ID, "err", err)
		}
	})
	l.http = &http.Server{Handler: mux, ReadHeaderTimeout: l.cfg.Gate.limits.ConnectTimeout, TLSConfig: l.cfg.TLS}
	ln := l.ln
	if l.cfg.Type == TypeWSS {
		ln = tls.NewListener(ln, l.cfg.TLS)
	}
	err := l.http.Serve(ln)
	if err != nil && !l.end.Load() && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("mqtt: websocket listener failed", "listener", l.cfg.ID, "err", err)
	}
}

// StopAccepting closes the listening socket; connected clients stay.
func (l *Listener) StopAccepting() {
	l.end.Store(true)
	if l.ln != nil {
		l.ln.Close()
	}
}

// Close stops accepting and disconnects the listener's clients.
func (l *Listener) Close(closeClients listeners.CloseFn) {
	l.StopAccepting()
	if l.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = l.http.Shutdown(ctx)
		cancel()
	}
	closeClients(l.cfg.ID)
}

// wsConn carries MQTT over binary WebSocket messages; one MQTT packet may
// span messages and one message may hold several packets.
type wsConn struct {
	net.Conn
	c *websocket.Conn
	r io.Reader
	w sync.Mutex
}

func (ws *wsConn) Read(p []byte) (int, error) {
	for {
		if ws.r == nil {
			op, r, err := ws.c.NextReader()
			if err != nil {
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, errors.New("mqtt: websocket message is not binary")
			}
			ws.r = r
		}
		n, err := ws.r.Read(p)
		if errors.Is(err, io.EOF) {
			ws.r = nil
			if n == 0 {
				continue
			}
			return n, nil
		}
		return n, err
	}
}

func (ws *wsConn) Write(p []byte) (int, error) {
	ws.w.Lock()
	defer ws.w.Unlock()
	if err := ws.c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (ws *wsConn) Close() error { return ws.c.Close() }
