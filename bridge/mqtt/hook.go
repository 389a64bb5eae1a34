package mqtt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/edge/log"
)

// Config configures a Hook. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Log receives the records; required.
	Log *log.Log
	// Router maps publishes to log topics and partitions; required. The
	// caller creates its topics in Log before the broker starts.
	Router *route.Router
	// Server is the broker the hook is added to; required. Fan-out to local
	// subscribers needs Options.InlineClient; without it subscribers get
	// nothing from devices (the node always enables it).
	Server *mochi.Server
	// Check is the check stage of the pipeline (see check.go): it sees each
	// routed publish before it is placed and may refuse it, redirect it to
	// another log topic or add headers. nil accepts everything as routed.
	// It runs on the publishing client's read goroutine, once per publish
	// in arrival order, concurrently for different clients; it must not
	// block for long (the client's next publish waits).
	Check func(Publish) Verdict
	// AckGate, if set, holds each QoS 1/2 acknowledgement after the local
	// commit until the gate releases it (replicated.go); nil acknowledges
	// on local durability.
	AckGate AckGate
	// MaxInflight caps a session's unacknowledged publishes; one more
	// blocks the client's reads. Should match the broker's ReceiveMaximum.
	MaxInflight int
	// MaxPayloadBytes refuses larger payloads (DISCONNECT 0x95).
	MaxPayloadBytes int
	// AckTimeout bounds how long a publish may wait for its commit or for
	// room in its session; the client is then disconnected. It is further
	// capped at three quarters of the client's keepalive.
	AckTimeout time.Duration
	// KeepaliveMax caps the keepalive clients may ask for (mosquitto's
	// max_keepalive); 0 is no cap. An MQTT 5 client asking for more (or for
	// none) is told KeepaliveMax in CONNACK (Server Keep Alive); an MQTT
	// 3.1.1 client is refused (CONNACK 0x02), since 3.1.1 cannot be told.
	KeepaliveMax time.Duration
	// Logger receives refusals and timeouts; nil discards.
	Logger *slog.Logger
	// Registerer receives the hook's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now returns the receive time stamped on records; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults as a fresh value.
func DefaultConfig() Config {
	return Config{
		MaxInflight:     256,
		MaxPayloadBytes: 256 << 10,
		AckTimeout:      20 * time.Second,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.MaxInflight == 0 {
		c.MaxInflight = d.MaxInflight
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = d.MaxPayloadBytes
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = d.AckTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the config after defaults are filled in.
func (c Config) Validate() error {
	c.fill()
	switch {
	case c.Log == nil:
		return errors.New("mqtt: Log: required")
	case c.Router == nil:
		return errors.New("mqtt: Router: required")
	case c.Server == nil:
		return errors.New("mqtt: Server: required")
	case c.MaxInflight < 1 || c.MaxInflight > 65535:
		return fmt.Errorf("mqtt: MaxInflight: %d is not between 1 and 65535", c.MaxInflight)
	case c.MaxPayloadBytes < 1:
		return fmt.Errorf("mqtt: MaxPayloadBytes: %d is below 1", c.MaxPayloadBytes)
	case c.AckTimeout < 10*time.Millisecond:
		return fmt.Errorf("mqtt: AckTimeout: %v is below 10ms", c.AckTimeout)
	case c.KeepaliveMax < 0 || c.KeepaliveMax > 65535*time.Second:
		return fmt.Errorf("mqtt: KeepaliveMax: %v is not between 0 (off) and 65535s", c.KeepaliveMax)
	case c.KeepaliveMax%time.Second != 0:
		return fmt.Errorf("mqtt: KeepaliveMax: %v is not a whole number of seconds", c.KeepaliveMax)
	}
	return nil
}

// Hook is the ingest hook. Add it to the server with Server.AddHook(h, nil);
// call Close once the server is closed.
type Hook struct {
	mochi.HookBase
	cfg Config
	m   *metrics

	mu       sync.Mutex
	sessions map[string]*session // mu; by client id

	// tryCtx is already cancelled: AppendAsync with it enqueues when the
	// partition has room and fails at once otherwise, so the common case
	// needs no timer.
	tryCtx context.Context

	closing atomic.Bool
	qos2    atomic.Bool   // a QoS 2 publish has been seen: OnPacketRead is needed
	pending atomic.Int64  // publishes placed and not yet completed; only track changes it
	idle    chan struct{} // buffer 1: pending reached 0 while closing

	// The goroutines the hook starts (session drainers, the refusal of a
	// failed QoS 0 append) are counted in wg; Close waits for them.
	goMu   sync.RWMutex
	closed bool // goMu
	wg     sync.WaitGroup

	// subGen changes whenever a subscription may have come or gone, which
	// invalidates the sessions' cached answer to "does anyone subscribe to
	// this topic" (see wantsFanout).
	subGen atomic.Uint64
	// qosHdr holds the values of the QoS header, shared by every record.
	qosHdr [3][]byte
}

var _ mochi.Hook = (*Hook)(nil)

// New returns a hook; it starts no goroutines (see Run).
func New(cfg Config) (*Hook, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tryCtx, cancel := context.WithCancel(context.Background())
	cancel()
	h := &Hook{
		tryCtx:   tryCtx,
		cfg:      cfg,
		sessions: make(map[string]*session),
		idle:     make(chan struct{}, 1),
		qosHdr:   [3][]byte{[]byte("0"), []byte("1"), []byte("2")},
	}
	h.m = newMetrics(cfg.Registerer, func() float64 { return float64(h.pending.Load()) })
	prepareInline(cfg.Server)
	return h, nil
}

// ID names the hook for mochi.
func (h *Hook) ID() string { return "outpost-ingest" }

// Provides tells mochi which events the hook handles.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mochi.OnPublish, mochi.OnSessionEstablish, mochi.OnSessionEstablished, mochi.OnDisconnect,
		mochi.OnClientExpired, mochi.OnSubscribed, mochi.OnUnsubscribed:
		return true
	case mochi.OnConnect:
		return h.cfg.KeepaliveMax > 0
	case mochi.OnPacketRead:
		// mochi asks before every packet, and the call copies the packet
		// several times; it only matters once a QoS 2 exchange may be
		// open, which takes a QoS 2 publish through OnPublish first
		// (sessions are not restored from storage).
		return h.qos2.Load()
	}
	return false
}

// OnSubscribed invalidates the cached "no subscriber" answers. mochi calls
// it after the subscription is in its topic index, so a publish that reads
// the new generation finds the subscription there.
func (h *Hook) OnSubscribed(*mochi.Client, packets.Packet, []byte) { h.subGen.Add(1) }

// OnUnsubscribed invalidates the cached answers, so that a topic whose
// last subscriber left stops paying for a fan-out.
func (h *Hook) OnUnsubscribed(*mochi.Client, packets.Packet) { h.subGen.Add(1) }

// OnSessionEstablish runs before a resumed session's queued messages are
// sent to the new connection: the expired ones go first (see
// dropExpiredQueued).
func (h *Hook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	if cl.Net.Inline || pk.Connect.Clean {
		return
	}
	dropExpiredQueued(h.cfg.Server, cl.ID, h.cfg.Now())
}

// OnSessionEstablished binds the connection to its session: a new one on a
// clean start, the existing one when the session resumes, so that acks of
// publishes still committing go to the connection that can receive them.
func (h *Hook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	// A resumed session's subscriptions move to the new connection without
	// OnSubscribed.
	h.subGen.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sessions[cl.ID]
	if s == nil || pk.Connect.Clean {
		h.sessions[cl.ID] = newSession(h, cl)
		return
	}
	s.mu.Lock()
	s.cl = cl
	s.mu.Unlock()
}

// OnDisconnect forgets a session that ends with its connection.
func (h *Hook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	// mochi calls it from the connection's reader goroutine, which may have
	// stopped reading with publishes in its burst (a DISCONNECT, an error).
	burstOf(cl).flush()
	if expire {
		h.forget(cl)
	}
}

// OnClientExpired forgets an expired persistent session.
func (h *Hook) OnClientExpired(cl *mochi.Client) { h.forget(cl) }

func (h *Hook) forget(cl *mochi.Client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s := h.sessions[cl.ID]; s != nil {
		s.mu.Lock()
		mine := s.cl == cl
		s.mu.Unlock()
		if mine {
			delete(h.sessions, cl.ID)
		}
	}
}

// sessionFor returns the session of a connection's publish. A connection
// accepted by a Listener remembers it: the hook's map is shared by every
// connection, and its lock taken per publish was the node's most contended
// (100 devices: a fifth of their reader goroutines waited on it). The
// session a connection started with stays its session: after a takeover,
// its last publishes are acknowledged as they were received, on it.
func (h *Hook) sessionFor(cl *mochi.Client) *session {
	c := burstOf(cl)
	if c != nil && c.sess != nil {
		return c.sess
	}
	h.mu.Lock()
	s := h.sessions[cl.ID]
	if s == nil {
		s = newSession(h, cl)
		h.sessions[cl.ID] = s
	}
	h.mu.Unlock()
	if c != nil {
		c.sess = s
	}
	return s
}

// timeout is the ack deadline for a client: AckTimeout, capped below its
// keepalive so that a slow commit does not look like a dead connection.
func (h *Hook) timeout(cl *mochi.Client) time.Duration {
	d := h.cfg.AckTimeout
	if ka := time.Duration(cl.State.Keepalive) * time.Second; ka > 0 && ka*3/4 < d {
		d = ka * 3 / 4
	}
	return d
}

// track is the one place the pending count changes: +n when publishes are
// placed, -n when they complete. Drain is woken when it reaches 0 while
// closing.
func (h *Hook) track(n int) {
	if h.pending.Add(int64(n)) == 0 && n < 0 && h.closing.Load() {
		select {
		case h.idle <- struct{}{}:
		default: // a wake-up is already waiting; Drain rechecks the count
		}
	}
}

// completed counts n publishes out of pending.
func (h *Hook) completed(n int) { h.track(-n) }

// spawn runs f on a goroutine that Close waits for. After Close, f runs
// on the caller's goroutine: nothing is left to run it, and the
// connections it writes to are closed, so it does not block.
func (h *Hook) spawn(f func()) {
	h.goMu.RLock()
	if h.closed {
		h.goMu.RUnlock()
		f()
		return
	}
	h.wg.Add(1)
	h.goMu.RUnlock()
	go func() {
		defer h.wg.Done()
		f()
	}()
}

// Run disconnects clients whose oldest publish has waited longer than its
// ack timeout, until ctx ends.
func (h *Hook) Run(ctx context.Context) error {
	tick := max(h.cfg.AckTimeout/4, 10*time.Millisecond)
	t := time.NewTicker(min(tick, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			h.checkTimeouts()
		}
	}
}

func (h *Hook) checkTimeouts() {
	h.mu.Lock()
	ss := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		ss = append(ss, s)
	}
	h.mu.Unlock()
	now := h.cfg.Now()
	for _, s := range ss {
		s.mu.Lock()
		cl := s.cl
		late := len(s.queue) > 0 && s.stuck != cl && now.Sub(s.queue[0].at) > h.timeout(cl)
		if late {
			s.stuck = cl
		}
		s.mu.Unlock()
		if late {
			h.m.timeouts.Inc()
			h.cfg.Logger.Warn("mqtt: publish not durable within the ack timeout; disconnecting the client so it resends", "client", cl.ID, "timeout", h.timeout(cl))
			cl.Stop(ErrAckTimeout)
		}
	}
}

// Drain refuses new publishes and waits until every placed one has been
// acknowledged or refused, or ctx ends. Call it before closing the log and
// the broker, after the listeners stopped accepting. It is woken by the
// completion that brings the count to zero, not by polling.
func (h *Hook) Drain(ctx context.Context) error {
	h.closing.Store(true)
	// A completion that reached zero before closing was set sent no
	// wake-up, but then the count read here is already zero.
	for h.pending.Load() > 0 {
		select {
		case <-h.idle:
		case <-ctx.Done():
			return fmt.Errorf("mqtt: drain: %d publishes still pending: %w", h.pending.Load(), ctx.Err())
		}
	}
	return nil
}

// Close waits for the goroutines the hook started (ack drainers, QoS 0
// refusals). Call it after the broker is closed and its clients have
// stopped, so that no publish arrives any more; it is idempotent. The log
// may be closed after it.
func (h *Hook) Close() error {
	h.closing.Store(true)
	h.goMu.Lock()
	h.closed = true
	h.goMu.Unlock()
	h.wg.Wait()
	return nil
}

// Pending returns the publishes placed and not yet completed.
func (h *Hook) Pending() int64 { return h.pending.Load() }
