package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/outpost-edge/outpost/internal/backoff"
	"github.com/prometheus/client_golang/prometheus"
)

// LinkConfig configures a Link. Zero durations take the defaults of
// DefaultConfig (ReconnectMin, ReconnectMax, AckTimeout).
type LinkConfig struct {
	// URL is the NATS server (or comma-separated cluster seed list),
	// e.g. nats://core.example:4222 or tls://core.example:4222.
	URL string
	// CredsFile is a NATS credentials file (JWT + NKey seed); "" for none.
	CredsFile string
	// TLS configures the connection's TLS.
	TLS TLSConfig
	// Name is the client name the server shows for the connection.
	Name string
	// ReconnectMin and ReconnectMax bound the exponential backoff (full
	// jitter) between connection attempts, also after refused credentials.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// Timeout bounds every JetStream API request and asynchronous publish
	// made through the link's JetStream handle; a dial may take
	// max(2 s, Timeout).
	Timeout time.Duration
	// Logger receives connection state changes, once per change; nil
	// discards.
	Logger *slog.Logger
	// Registerer receives the link's metrics (outpost_upstream_connected,
	// _reconnects_total, _connect_errors_total, _dials_deferred_total); nil
	// registers nothing. A node has one link: the names are registered once.
	Registerer prometheus.Registerer
}

func (c LinkConfig) withDefaults() LinkConfig {
	d := DefaultConfig()
	if c.ReconnectMin == 0 {
		c.ReconnectMin = d.ReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = d.ReconnectMax
	}
	if c.Timeout == 0 {
		c.Timeout = d.AckTimeout
	}
	return c
}

// Validate checks c after defaults are filled in. Errors name the field.
func (c LinkConfig) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("upstream: URL: required (the NATS server of the central cluster, e.g. nats://core:4222)")
	case (c.TLS.CertFile == "") != (c.TLS.KeyFile == ""):
		return errors.New("upstream: TLS.CertFile and TLS.KeyFile: give both or neither")
	case c.ReconnectMin < time.Millisecond:
		return fmt.Errorf("upstream: ReconnectMin: %v is below 1ms", c.ReconnectMin)
	case c.ReconnectMax < c.ReconnectMin:
		return fmt.Errorf("upstream: ReconnectMax: %v is below ReconnectMin %v", c.ReconnectMax, c.ReconnectMin)
	case c.Timeout < 10*time.Millisecond:
		return fmt.Errorf("upstream: Timeout: %v is below 10ms", c.Timeout)
	}
	return nil
}

// Link is a node's connection to the central NATS cluster, shared by the
// components that talk to the centre (the forwarder; downlink and schema
// sync next). Run keeps it up: nats.go reconnects forever with jittered
// backoff (also on refused credentials, which get fixed server-side), and
// a new connection object replaces one that closes anyway. Link logs each
// change of state once, reports TLS handshake failures nats.go tells no
// handler about, and counts connects, reconnects and failures.
//
// Users take the current connection with Conn or Wait and learn about
// every change of state (connect, disconnect, reconnect, replacement) from
// Changed. Every dial goes through a gate (gate.go) whose epoch tells a
// user that the connection it checked has been replaced since.
type Link struct {
	cfg     LinkConfig
	log     *slog.Logger
	m       *linkMetrics
	backoff backoff.Backoff
	running atomic.Bool

	conn     atomic.Pointer[Conn] // nil while no connection object exists
	changed  broadcaster          // broadcast on every change of state
	connects atomic.Uint64        // successful connects and reconnects

	// lastPerm is when the server last reported a permissions violation
	// (Unix nanoseconds): it drops a publish it refuses for permissions,
	// so the publish only times out, and this tells such timeouts apart.
	lastPerm atomic.Int64

	mu    sync.Mutex
	state string // last logged state, to log once per change
}

// Conn is one connection object of a Link and its JetStream handle. nats.go
// reconnects it in place; Epoch moves on with every dial.
type Conn struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	gate *gate // every connection nc makes is dialled through it
}

// NATS returns the connection.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream returns the connection's JetStream handle (asynchronous
// publishes time out after LinkConfig.Timeout).
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// Up reports whether the connection is connected now.
func (c *Conn) Up() bool { return c.nc.Status() == nats.CONNECTED }

// Epoch counts the dials of the connection: a user that saw epoch e and
// still sees e knows no reconnect happened in between.
func (c *Conn) Epoch() uint64 { return c.gate.current() }

// publishAsync publishes msg only if the connection is up and no dial has
// happened since epoch: every message of a window goes out on the
// connection the window started on, or not at all (see gate). A publish
// while nats.go reconnects fails anyway (no reconnect buffer), and nats.go
// never retries it (its no-responders retry would reorder).
func (c *Conn) publishAsync(epoch uint64, msg *nats.Msg) (jetstream.PubAckFuture, error) {
	if !c.Up() || !c.gate.enter(epoch) {
		return nil, ErrNotConnected
	}
	defer c.gate.exit()
	return c.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
}

// publish publishes msg without a reply subject (fire and forget), under
// the same rule as publishAsync: only on the connection of epoch.
func (c *Conn) publish(epoch uint64, msg *nats.Msg) error {
	if !c.Up() || !c.gate.enter(epoch) {
		return ErrNotConnected
	}
	defer c.gate.exit()
	return c.nc.PublishMsg(msg)
}

// NewLink returns a Link. It starts nothing; Run connects.
func NewLink(cfg LinkConfig) (*Link, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newLinkMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Link{cfg: cfg, log: lg, m: m, backoff: backoff.Backoff{Min: cfg.ReconnectMin, Max: cfg.ReconnectMax}, changed: newBroadcaster()}, nil
}

// Run keeps the link connected until ctx ends, then closes the connection
// and returns nil; it returns an error if Run is already running. A
// connection object that closes anyway (or that nats.go refuses to create,
// e.g. for an unreadable credentials file) is replaced after a backoff.
func (l *Link) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("upstream: Link.Run: already running")
	}
	defer l.running.Store(false)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		closed := make(chan struct{})
		c, err := l.connect(closed)
		if err != nil {
			l.setState("connect failed", "err", err, "advice", "check url, creds_file and tls settings")
			backoff.Sleep(ctx, l.backoff.Delay(attempt))
			continue
		}
		l.conn.Store(c)
		l.changed.broadcast()
		if !l.watch(ctx, c, closed) {
			break
		}
		l.conn.Store(nil)
		l.changed.broadcast()
		l.m.connected.Set(0)
		backoff.Sleep(ctx, l.backoff.Delay(attempt))
	}
	if c := l.conn.Swap(nil); c != nil {
		c.nc.Close()
	}
	l.m.connected.Set(0)
	l.changed.broadcast()
	return nil
}

// connect makes a connection object; nats.go connects it in the background
// (RetryOnFailedConnect) and calls the handlers of options.
func (l *Link) connect(closed chan struct{}) (*Conn, error) {
	g := newGate(l.dialTimeout())
	nc, err := nats.Connect(l.cfg.URL, append(l.options(closed), nats.SetCustomDialer(g))...)
	if err != nil {
		l.m.connectErrors.WithLabelValues("other").Inc()
		return nil, err
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncTimeout(l.cfg.Timeout),
		// Users bound their own windows (the forwarder's partitions each
		// do); this only has to stay out of their way.
		jetstream.WithPublishAsyncMaxPending(1<<20))
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &Conn{nc: nc, js: js, gate: g}, nil
}

// watch waits until ctx ends (false) or the connection object closes
// (true), reporting failed handshakes meanwhile.
func (l *Link) watch(ctx context.Context, c *Conn, closed <-chan struct{}) bool {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-closed:
			return true
		case <-tick.C:
			l.noteHandshakeError(c.nc)
		}
	}
}

// Conn returns the connection if it is connected, else nil.
func (l *Link) Conn() *Conn {
	c := l.conn.Load()
	if c == nil || !c.Up() {
		return nil
	}
	return c
}

// Wait blocks until the link is connected or ctx ends.
func (l *Link) Wait(ctx context.Context) (*Conn, error) {
	for {
		ch := l.changed.wait()
		if c := l.Conn(); c != nil {
			return c, nil
		}
		// The state callbacks run asynchronously; a periodic recheck keeps a
		// missed broadcast from stalling a waiter.
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// Changed returns a channel closed at the link's next change of state:
// connected, disconnected, reconnected, connection replaced or closed.
// Take it before looking at the state, then select on it.
func (l *Link) Changed() <-chan struct{} { return l.changed.wait() }

// Connects counts the connects and reconnects so far; a user that saw n
// and now sees more knows the link came back (up) in between.
func (l *Link) Connects() uint64 { return l.connects.Load() }

// permissionDeniedSince reports whether the server reported a permissions
// violation within d.
func (l *Link) permissionDeniedSince(d time.Duration) bool {
	return time.Since(time.Unix(0, l.lastPerm.Load())) < d
}

func (l *Link) dialTimeout() time.Duration { return max(2*time.Second, l.cfg.Timeout) }

func (l *Link) options(closed chan struct{}) []nats.Option {
	opts := []nats.Option{
		nats.Name(l.cfg.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.IgnoreAuthErrorAbort(), // wrong credentials get fixed server-side; keep trying
		nats.CustomReconnectDelay(l.backoff.Delay),
		// No reconnect buffer: a publish while disconnected fails at once
		// instead of going out on the next connection behind messages lost
		// with the old one (for the forwarder, a hole the stream's last
		// offset cannot show).
		nats.ReconnectBufSize(-1),
		nats.Timeout(l.dialTimeout()),
		nats.PingInterval(20 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ConnectHandler(func(nc *nats.Conn) { l.onConnect(nc, false) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { l.onConnect(nc, true) }),
		nats.DisconnectErrHandler(l.onDisconnect),
		nats.ReconnectErrHandler(l.onReconnectError),
		nats.ErrorHandler(l.onServerError),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	}
	if l.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(l.cfg.CredsFile))
	}
	if l.cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(l.cfg.TLS.CAFile))
	}
	if l.cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(l.cfg.TLS.CertFile, l.cfg.TLS.KeyFile))
	}
	return opts
}

func (l *Link) onConnect(nc *nats.Conn, re bool) {
	if re {
		l.m.reconnects.Inc()
	}
	l.connects.Add(1)
	l.m.connected.Set(1)
	l.changed.broadcast()
	l.setState("connected", "server", nc.ConnectedUrlRedacted())
}

func (l *Link) onDisconnect(nc *nats.Conn, err error) {
	l.m.connected.Set(0)
	l.changed.broadcast()
	if err == nil && nc.IsClosed() {
		return // our own Close at shutdown, not a lost uplink
	}
	l.setState("disconnected", "err", err, "advice", advice(kindDisconnected))
}

func (l *Link) onReconnectError(_ *nats.Conn, err error) {
	if errors.Is(err, errDialBusy) {
		l.m.dialsDeferred.Inc()
		return
	}
	l.m.connectErrors.WithLabelValues(connectErrKind(err)).Inc()
	l.setState("connect failed: "+err.Error(), "err", err, "advice", connectAdvice(err))
}

func (l *Link) onServerError(_ *nats.Conn, _ *nats.Subscription, err error) {
	state := "server error: " + err.Error()
	if errors.Is(err, nats.ErrPermissionViolation) {
		l.lastPerm.Store(time.Now().UnixNano())
		// One line per change, not one per refused subject.
		state = "server error: permissions violation"
	}
	l.setState(state, "err", err, "advice", connectAdvice(err))
}

// setState logs a connection state once per change: a thousand failed
// reconnects with the same error make one line.
func (l *Link) setState(state string, attrs ...any) {
	l.mu.Lock()
	same := l.state == state
	l.state = state
	l.mu.Unlock()
	if same {
		return
	}
	if state == "connected" {
		l.log.Info("upstream: connected", attrs...)
		return
	}
	l.log.Warn("upstream: "+state, attrs...)
}

// noteHandshakeError reports a failed reconnect that nats.go tells no
// handler about: a dial that succeeds followed by a failed TLS handshake or
// INFO/CONNECT exchange (a server certificate the node does not trust after
// a rotation) only lands in nc.LastError, and the log would otherwise say
// nothing but "disconnected: EOF". Refused logins come through the error
// handler already.
func (l *Link) noteHandshakeError(nc *nats.Conn) {
	if nc.Status() == nats.CONNECTED {
		return
	}
	err := nc.LastError()
	if err == nil || connectErrKind(err) == "auth" || errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	state := "connect failed: " + err.Error()
	l.mu.Lock()
	same := l.state == state
	l.mu.Unlock()
	if same {
		return
	}
	l.m.connectErrors.WithLabelValues("other").Inc()
	l.setState(state, "err", err, "advice", connectAdvice(err))
}

func connectErrKind(err error) string {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return "auth"
	}
	return "other"
}

func connectAdvice(err error) string {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return "the server refused the credentials: check creds_file (or the TLS client certificate) against the server's accounts"
	case errors.Is(err, nats.ErrPermissionViolation):
		return "the NATS user lacks a permission; records wait at the edge until it is granted"
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) || strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:") {
		return "TLS failed: check tls.ca_file against the server's certificate, and tls.cert_file/key_file against the CA the server trusts; retrying with backoff"
	}
	return "retrying with backoff"
}

// broadcaster wakes every waiter at once: wait returns a channel closed by
// the next broadcast.
type broadcaster struct {
	mu *sync.Mutex
	ch *chan struct{}
}

func newBroadcaster() broadcaster {
	ch := make(chan struct{})
	return broadcaster{mu: new(sync.Mutex), ch: &ch}
}

func (s broadcaster) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.ch
}

func (s broadcaster) broadcast() {
	s.mu.Lock()
	close(*s.ch)
	ch := make(chan struct{})
	*s.ch = ch
	s.mu.Unlock()
}
