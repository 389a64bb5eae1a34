package mqtt

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// Header names of the records the hook writes (the contract's spelling,
// core/wire).
const (
	HeaderTopic       = wire.RecordHeaderMQTTTopic
	HeaderClientID    = wire.RecordHeaderMQTTClientID
	HeaderQoS         = wire.RecordHeaderMQTTQoS
	HeaderContentType = wire.RecordHeaderMQTTContentType
	// HeaderUserPrefix prefixes MQTT 5 user property names.
	HeaderUserPrefix = wire.RecordHeaderMQTTUserPrefix
)

// recentAcks is how many acknowledged QoS 1 (packet id, payload) pairs a
// session remembers to recognise a resend whose PUBACK was lost.
const recentAcks = 64

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
	// MaxInflight caps a session's unacknowledged publishes; one more
	// blocks the client's reads. Should match the broker's ReceiveMaximum.
	MaxInflight int
	// MaxPayloadBytes refuses larger payloads (DISCONNECT 0x95).
	MaxPayloadBytes int
	// AckTimeout bounds how long a publish may wait for its commit or for
	// room in its session; the client is then disconnected. It is further
	// capped at three quarters of the client's keepalive.
	AckTimeout time.Duration
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
	}
	return nil
}

// Hook is the ingest hook. Add it to the server with Server.AddHook(h, nil).
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
	pending atomic.Int64  // publishes queued and not yet completed
	idle    chan struct{} // buffer 1: pending reached 0 while closing

	// subGen changes whenever a subscription may have come or gone, which
	// invalidates the sessions' cached answer to "does anyone subscribe to
	// this topic" (see wantsFanout).
	subGen atomic.Uint64
	// qosHdr holds the values of the QoS header, shared by every record.
	qosHdr [3][]byte
}

var _ mochi.Hook = (*Hook)(nil)

// errReject makes mochi send nothing: the hook acknowledges itself.
var errReject = fmt.Errorf("ingest: %w", packets.ErrRejectPacket)

// handled is what OnPublish returns once the publish is the hook's: a
// rejection, so mochi sends no ack, except at QoS 0, where there is no ack
// and the packet is marked Ignore instead, which stops mochi's fan-out and
// retained store as well. An error costs mochi several allocations per
// publish (it converts its error codes to compare them, and logs every
// rejection, which copies the packet even when debug logging is off).
func handled(pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 {
		pk.Ignore = true
		return pk, nil
	}
	return pk, errReject
}

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
	return h, nil
}

// ID names the hook for mochi.
func (h *Hook) ID() string { return "outpost-ingest" }

// Provides tells mochi which events the hook handles.
func (h *Hook) Provides(b byte) bool {
	switch b {
	case mochi.OnPublish, mochi.OnSessionEstablished, mochi.OnDisconnect, mochi.OnClientExpired,
		mochi.OnSubscribed, mochi.OnUnsubscribed:
		return true
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

// session is the ingest state of one MQTT session (client id), which
// outlives a connection when the session persists.
type session struct {
	h       *Hook
	id      string
	idBytes []byte // id as a header value, shared by the session's records

	// topic caches what the session's last topic costs to look up; it is
	// replaced, never changed, so that the connections of a session being
	// taken over can share it.
	topic atomic.Pointer[topicCache]

	mu       sync.Mutex
	cl       *mochi.Client     // mu; the current connection
	queue    []*entry          // mu; arrival order, not yet completed
	ids      map[uint16]*entry // mu; QoS>0 entries in queue by packet id
	draining bool              // mu; a drain goroutine runs
	space    chan struct{}     // mu; closed when the queue shrinks
	recent   []recentAck       // mu; ring of acknowledged QoS 1 publishes
	next     int               // mu; next slot of recent
	stuck    *mochi.Client     // mu; connection already disconnected for a timeout
	rerec    map[uint16]bool   // mu; QoS 2 ids retransmitted after their PUBREC
}

// topicCache is a session's last publish topic as a header value and
// whether a local subscriber (or the retained store) wants it.
type topicCache struct {
	name    string
	value   []byte
	gen     uint64 // Hook.subGen when subs was looked up
	subs    bool
	checked bool // subs is valid for gen
	// hdrs are the headers of a publish of QoS qos on this topic with no
	// properties that become headers: records share them, read-only.
	qos  byte
	hdrs []log.Header
}

type recentAck struct {
	id   uint16
	hash uint32
}

// entry is one publish on its way to completion.
type entry struct {
	pk     packets.Packet
	cl     *mochi.Client // connection it arrived on
	at     time.Time
	hash   uint32 // of topic and payload, QoS 1 only
	answer bool   // a recognised resend: ack without append or fan-out
	done   bool   // session.mu
	err    error  // session.mu
}

func newSession(h *Hook, cl *mochi.Client) *session {
	return &session{h: h, id: cl.ID, idBytes: []byte(cl.ID), cl: cl, space: make(chan struct{})}
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
	if fc, ok := cl.Net.Conn.(*firstPacket); ok {
		fc.burst.flush()
	}
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

// OnPacketRead catches a QoS 2 PUBLISH retransmitted after its PUBREC (the
// client did not receive it): mochi would answer it with PUBREC 0x91
// (packet identifier in use), which an MQTT 5 client takes as a failure,
// so the hook takes the id back from mochi's inflight map and answers it
// itself with a success PUBREC, without appending ([MQTT-4.3.3-10]).
func (h *Hook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos != 2 || cl.Net.Inline {
		return pk, nil
	}
	in, ok := cl.State.Inflight.Get(pk.PacketID)
	if !ok || in.FixedHeader.Type != packets.Pubrec {
		return pk, nil
	}
	s := h.sessionFor(cl)
	s.mu.Lock()
	if cl.State.Inflight.Delete(pk.PacketID) {
		atomic.AddInt64(&h.cfg.Server.Info.Inflight, -1)
	}
	if s.rerec == nil {
		s.rerec = make(map[uint16]bool)
	}
	s.rerec[pk.PacketID] = true
	s.mu.Unlock()
	return pk, nil
}

// OnPublish queues the publish for a group commit and takes over its
// acknowledgement; it returns a rejection so that mochi sends nothing.
func (h *Hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		// Our own fan-out of a durable publish: mochi made the inline client
		// its origin; put the device back, so that a subscriber's NoLocal
		// option filters the device's own publishes (see fanout).
		if id := pk.Connect.ClientIdentifier; id != "" {
			pk.Origin = id
			pk.Connect.ClientIdentifier = ""
		}
		return pk, nil
	}
	qos := pk.FixedHeader.Qos
	s := h.sessionFor(cl)
	b := burstOf(cl)
	if qos == 0 && b != nil && !h.closing.Load() && len(pk.Payload) <= h.cfg.MaxPayloadBytes && !h.wantsFanout(s, &pk) {
		b.add(h, s, cl, &pk)
		return handled(pk)
	}
	// Anything else keeps its place after the QoS 0 publishes before it.
	b.flush()
	h.m.ingestQoS[min(qos, 2)].Inc()
	if qos == 2 {
		h.qos2.Store(true)
	}
	at := h.cfg.Now()
	switch {
	case h.closing.Load():
		s.refuse(&entry{pk: pk, cl: cl, at: at}, ErrShuttingDown)
		return handled(pk)
	case len(pk.Payload) > h.cfg.MaxPayloadBytes:
		s.refuse(&entry{pk: pk, cl: cl, at: at}, fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(pk.Payload), h.cfg.MaxPayloadBytes))
		return handled(pk)
	}
	if qos == 0 && !h.wantsFanout(s, &pk) {
		h.pending.Add(1)
		target := h.cfg.Router.Route(pk.TopicName, cl.ID, pk.Payload)
		p, err := h.cfg.Log.Partition(target.Topic, target.Partition)
		if err != nil {
			h.failQoS0(s, cl, pk.TopicName, 1, err)
			return handled(pk)
		}
		rec := h.record(s, &pk, target, at, nil)
		h.appendQoS0(s, cl, p, []log.Record{rec}, nil)
		return handled(pk)
	}
	e := &entry{pk: pk, cl: cl, at: at}
	if qos == 1 {
		e.hash = hashPublish(pk)
	}

	s.mu.Lock()
	if qos > 0 {
		if _, ok := s.ids[pk.PacketID]; ok {
			// A resend of a publish still committing: its ack answers both.
			s.mu.Unlock()
			h.m.dups.Inc()
			h.m.ack(reasonDuplicate)
			return handled(pk)
		}
		if qos == 1 && pk.FixedHeader.Dup && s.acked(pk.PacketID, e.hash) {
			e.answer = true
			h.m.dups.Inc()
		}
		if qos == 2 && s.rerec[pk.PacketID] {
			delete(s.rerec, pk.PacketID)
			if len(s.rerec) == 0 {
				s.rerec = nil
			}
			e.answer = true
			h.m.dups.Inc()
		}
	}
	if len(s.queue) >= h.cfg.MaxInflight && !s.waitRoomLocked(h.timeout(cl)) {
		s.mu.Unlock()
		h.m.ack(reasonTimeout)
		h.m.timeouts.Inc()
		h.cfg.Logger.Warn("mqtt: client exceeded its in-flight publishes for longer than the ack timeout; disconnecting", "client", cl.ID, "max_inflight", h.cfg.MaxInflight)
		cl.Stop(ErrAckTimeout)
		return handled(pk)
	}
	s.addLocked(e)
	s.mu.Unlock()

	if e.answer {
		s.finish(e, nil)
		return handled(pk)
	}
	target := h.cfg.Router.Route(pk.TopicName, cl.ID, pk.Payload)
	p, err := h.cfg.Log.Partition(target.Topic, target.Partition)
	if err != nil {
		s.finish(e, err)
		return handled(pk)
	}
	recs := []log.Record{h.record(s, &pk, target, e.at, nil)}
	if err := h.appendBounded(p, cl, recs, func(_ int64, err error) { s.finish(e, err) }); err != nil {
		s.finish(e, err)
	}
	return handled(pk)
}

// appendBounded queues recs, waiting for room in the partition no longer
// than the client's ack timeout.
func (h *Hook) appendBounded(p *log.Partition, cl *mochi.Client, recs []log.Record, done func(int64, error)) error {
	err := p.AppendAsync(h.tryCtx, recs, done)
	if errors.Is(err, context.Canceled) {
		// The partition's queue is full: wait for room, bounded.
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout(cl))
		err = p.AppendAsync(ctx, recs, done)
		cancel()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", ErrAckTimeout, err)
	}
	return err
}

// appendQoS0 appends QoS 0 publishes (already counted in pending) that no
// local subscriber and no retained store wants. With no ack and no fan-out
// they need no place in the session's ordered queue and no copy of the
// packet: only the count that Drain waits for, and a refusal if the append
// fails. Once the log is done with recs, they go back to spare, if not nil.
func (h *Hook) appendQoS0(s *session, cl *mochi.Client, p *log.Partition, recs []log.Record, spare chan []log.Record) {
	n := len(recs)
	done := func(_ int64, err error) {
		if err != nil {
			// The committer never writes to the network.
			go h.failQoS0(s, cl, string(recs[0].Headers[0].Value), n, err)
			return
		}
		h.m.ackSuccess.Add(float64(n))
		h.completed(n)
		if spare != nil && cap(recs) <= maxSpare {
			clear(recs) // holds payloads
			select {
			case spare <- recs[:0]:
			default:
			}
		}
	}
	err := h.appendBounded(p, cl, recs, done)
	if errors.Is(err, log.ErrBatchTooLarge) && n > 1 {
		// A burst the log takes in two appends, not one.
		h.appendQoS0(s, cl, p, recs[:n/2:n/2], nil)
		h.appendQoS0(s, cl, p, recs[n/2:], nil)
		return
	}
	if err != nil {
		h.failQoS0(s, cl, string(recs[0].Headers[0].Value), n, err)
	}
}

// failQoS0 refuses n QoS 0 publishes of appendQoS0 that failed.
func (h *Hook) failQoS0(s *session, from *mochi.Client, topic string, n int, err error) {
	s.mu.Lock()
	cl := s.cl
	s.mu.Unlock()
	h.refused(cl, &entry{pk: packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic}, cl: from, err: err})
	if n > 1 {
		reason, _ := classify(err)
		h.m.ackReason[reason].Add(float64(n - 1))
	}
	h.completed(n)
}

// maxSpare bounds the records slice a connection keeps for its next burst,
// so that an idle connection holds little (a burst is rarely more than a
// read buffer's worth of publishes).
const maxSpare = 64

// maxBurst bounds the QoS 0 publishes a connection collects into one
// append; a read buffer's worth (2 KiB in mochi) is usually far fewer.
const maxBurst = 256

// burst collects a connection's QoS 0 publishes that need no fan-out, read
// from the bytes of one network read, into one append: one AppendAsync,
// one completion, one time stamp and one slice of records and of headers
// for all of them instead of one each. Only the connection's reader
// goroutine touches it. It is flushed before that goroutine goes back to
// the network (firstPacket.Read), so a burst never waits for more input;
// before any other publish, so that the log keeps a connection's arrival
// order; and when the connection ends (OnDisconnect).
type burst struct {
	sess *session // the connection's session (see sessionFor)

	s    *session
	cl   *mochi.Client
	h    *Hook
	p    *log.Partition
	at   time.Time
	recs []log.Record
	hdrs []log.Header   // headers of recs, then free room for more
	hint int            // size of the previous burst, to size the next
	last *log.Partition // the partition of the connection's last publish
	// spare takes back a burst's records once the log is done with them,
	// for the next burst: allocating them was most of what the hook
	// allocated per publish.
	spare chan []log.Record
}

// burstOf returns the burst of a connection accepted by a Listener, or nil
// for other connections, whose QoS 0 publishes are appended one by one.
func burstOf(cl *mochi.Client) *burst {
	fc, ok := cl.Net.Conn.(*firstPacket)
	if !ok {
		return nil
	}
	if fc.burst == nil {
		fc.burst = &burst{spare: make(chan []log.Record, 1)}
	}
	return fc.burst
}

func (b *burst) add(h *Hook, s *session, cl *mochi.Client, pk *packets.Packet) {
	target := h.cfg.Router.Route(pk.TopicName, cl.ID, pk.Payload)
	p, err := b.last, error(nil)
	if p == nil || p.ID() != target.Partition || p.Topic() != target.Topic {
		// Partitions live as long as the log: the last one is kept.
		if p, err = h.cfg.Log.Partition(target.Topic, target.Partition); err == nil {
			b.last = p
		}
	}
	if len(b.recs) > 0 && (err != nil || p != b.p || s != b.s || cl != b.cl || len(b.recs) >= maxBurst) {
		b.flush()
	}
	if err != nil {
		h.m.ingestQoS[0].Inc()
		h.pending.Add(1)
		h.failQoS0(s, cl, pk.TopicName, 1, err)
		return
	}
	if len(b.recs) == 0 {
		// Counted as one until the flush, so that Drain waits for it.
		h.pending.Add(1)
		b.s, b.cl, b.h, b.p = s, cl, h, p
		b.at = h.cfg.Now()
		select {
		case b.recs = <-b.spare:
		default:
			b.recs = make([]log.Record, 0, max(b.hint, 4))
		}
	}
	if len(pk.Properties.User) == 0 && pk.Properties.ContentType == "" {
		b.recs = append(b.recs, h.record(s, pk, target, b.at, nil)) // shared headers
		return
	}
	need := headerCount(pk)
	if cap(b.hdrs)-len(b.hdrs) < need {
		b.hdrs = make([]log.Header, 0, max(need, 3*max(b.hint, 4)))
	}
	n := len(b.hdrs)
	b.hdrs = b.hdrs[:n+need]
	b.recs = append(b.recs, h.record(s, pk, target, b.at, b.hdrs[n:n:n+need]))
}

// flush appends the burst; a nil burst has nothing to flush.
func (b *burst) flush() {
	if b == nil || len(b.recs) == 0 {
		return
	}
	h, recs := b.h, b.recs
	n := len(recs)
	b.hint = n
	h.m.ingestQoS[0].Add(float64(n))
	h.pending.Add(int64(n - 1))
	b.recs = nil
	h.appendQoS0(b.s, b.cl, b.p, recs, b.spare)
	b.s, b.cl, b.p = nil, nil, nil
}

// completed counts n publishes out of pending and wakes Drain if it waits
// for the last.
func (h *Hook) completed(n int) {
	if h.pending.Add(int64(-n)) == 0 && h.closing.Load() {
		select {
		case h.idle <- struct{}{}:
		default:
		}
	}
}

// wantsFanout reports whether a durable publish must go through mochi: to
// a local subscriber, or to the retained store. Most publishes of a device
// go to a topic nobody on the node subscribes to, and mochi's subscriber
// lookup allocates maps per call, so the answer is cached per session until
// a subscription changes.
func (h *Hook) wantsFanout(s *session, pk *packets.Packet) bool {
	if !h.cfg.Server.Options.InlineClient {
		return false // nothing to fan out with (see Config.Server)
	}
	if pk.FixedHeader.Retain {
		return true
	}
	return h.topicFor(s, pk.TopicName, true).subs
}

// topicFor returns the session's cache entry for topic, with a current
// subscriber answer if subs.
func (h *Hook) topicFor(s *session, topic string, subs bool) *topicCache {
	// The generation is read before the index: a subscription added after
	// this read bumps it and the next publish looks again.
	gen := h.subGen.Load()
	c := s.topic.Load()
	if c != nil && c.name == topic && (!subs || (c.checked && c.gen == gen)) {
		return c
	}
	n := &topicCache{name: topic}
	if c != nil && c.name == topic {
		n.value, n.qos, n.hdrs = c.value, c.qos, c.hdrs
	} else {
		n.value = []byte(topic)
	}
	if subs {
		found := h.cfg.Server.Topics.Subscribers(topic)
		n.gen, n.checked = gen, true
		n.subs = len(found.Subscriptions)+len(found.Shared)+len(found.InlineSubscriptions) > 0
	}
	s.topic.Store(n)
	return n
}

// headerCount is the number of headers record gives pk.
func headerCount(pk *packets.Packet) int {
	return 3 + len(pk.Properties.User) + min(len(pk.Properties.ContentType), 1)
}

// sharedHeaders returns the headers of a publish that has only the three
// that every record has, shared with the session's other records of that
// topic and QoS, or nil if pk has more. Most devices publish to one or a
// few topics, so most records then need no headers of their own.
func (h *Hook) sharedHeaders(s *session, pk *packets.Packet) []log.Header {
	if len(pk.Properties.User) > 0 || pk.Properties.ContentType != "" {
		return nil
	}
	qos := min(pk.FixedHeader.Qos, 2)
	c := h.topicFor(s, pk.TopicName, false)
	if c.hdrs != nil && c.qos == qos {
		return c.hdrs
	}
	// Replaced, not changed: records already queued keep the old headers.
	n := *c
	n.qos = qos
	n.hdrs = []log.Header{
		{Key: HeaderTopic, Value: c.value},
		{Key: HeaderClientID, Value: s.idBytes},
		{Key: HeaderQoS, Value: h.qosHdr[qos]},
	}
	n.hdrs = n.hdrs[:3:3]
	s.topic.Store(&n)
	return n.hdrs
}

// record builds the log record of a publish, with its headers shared (see
// sharedHeaders) or in hdrs (length 0, capacity headerCount; nil
// allocates). Header values shared between records (client id, QoS, a
// repeated topic) are never written to.
func (h *Hook) record(s *session, pk *packets.Packet, t route.Target, at time.Time, hdrs []log.Header) log.Record {
	if sh := h.sharedHeaders(s, pk); sh != nil {
		return log.Record{Timestamp: at.UnixNano(), Key: t.Key, Value: pk.Payload, Headers: sh}
	}
	if hdrs == nil {
		hdrs = make([]log.Header, 0, headerCount(pk))
	}
	hdrs = append(hdrs,
		log.Header{Key: HeaderTopic, Value: h.topicFor(s, pk.TopicName, false).value},
		log.Header{Key: HeaderClientID, Value: s.idBytes},
		log.Header{Key: HeaderQoS, Value: h.qosHdr[min(pk.FixedHeader.Qos, 2)]},
	)
	if ct := pk.Properties.ContentType; ct != "" {
		hdrs = append(hdrs, log.Header{Key: HeaderContentType, Value: []byte(ct)})
	}
	for _, u := range pk.Properties.User {
		hdrs = append(hdrs, log.Header{Key: HeaderUserPrefix + u.Key, Value: []byte(u.Val)})
	}
	return log.Record{Timestamp: at.UnixNano(), Key: t.Key, Value: pk.Payload, Headers: hdrs}
}

func hashPublish(pk packets.Packet) uint32 {
	f := fnv.New32a()
	f.Write([]byte(pk.TopicName))
	f.Write([]byte{0})
	f.Write(pk.Payload)
	return f.Sum32()
}

// acked reports whether (id, hash) was acknowledged recently. mu held.
func (s *session) acked(id uint16, hash uint32) bool {
	for _, r := range s.recent {
		if r.id == id && r.hash == hash {
			return true
		}
	}
	return false
}

func (s *session) rememberLocked(id uint16, hash uint32) {
	n := min(recentAcks, s.h.cfg.MaxInflight)
	if len(s.recent) < n {
		s.recent = append(s.recent, recentAck{id, hash})
		return
	}
	s.recent[s.next] = recentAck{id, hash}
	s.next = (s.next + 1) % n
}

// waitRoomLocked waits until the queue has room or d passes. mu held; it
// is released while waiting.
func (s *session) waitRoomLocked(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for len(s.queue) >= s.h.cfg.MaxInflight {
		ch := s.space
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
		case <-t.C:
			s.mu.Lock()
			return len(s.queue) < s.h.cfg.MaxInflight
		}
	}
	return true
}

func (s *session) addLocked(e *entry) {
	s.queue = append(s.queue, e)
	if e.pk.FixedHeader.Qos > 0 && !e.answer {
		if s.ids == nil {
			s.ids = make(map[uint16]*entry)
		}
		s.ids[e.pk.PacketID] = e
	}
	s.h.pending.Add(1)
}

// refuse queues an entry that has already failed, so that its refusal goes
// out in arrival order after the acks before it.
func (s *session) refuse(e *entry, err error) {
	s.mu.Lock()
	s.queue = append(s.queue, e)
	s.h.pending.Add(1)
	s.mu.Unlock()
	s.finish(e, err)
}

// finish records an entry's outcome. It runs on the log's committer
// goroutine, so it only marks and, if the queue head is ready, starts a
// drainer; it never writes to the network.
func (s *session) finish(e *entry, err error) {
	s.mu.Lock()
	e.done, e.err = true, err
	start := !s.draining && len(s.queue) > 0 && s.queue[0].done
	if start {
		s.draining = true
	}
	s.mu.Unlock()
	if start {
		go s.drain()
	}
}

// drain completes the ready prefix of the queue, in order, until none is
// ready. At most one drain runs per session.
func (s *session) drain() {
	for {
		s.mu.Lock()
		n := 0
		for n < len(s.queue) && s.queue[n].done {
			n++
		}
		if n == 0 {
			s.draining = false
			s.mu.Unlock()
			return
		}
		batch := make([]*entry, n)
		copy(batch, s.queue)
		rest := copy(s.queue, s.queue[n:])
		clear(s.queue[rest:])
		s.queue = s.queue[:rest]
		cl := s.cl
		for _, e := range batch {
			if e.answer && e.err == nil && e.pk.FixedHeader.Qos == 2 {
				// A retransmission answered again: the id goes back to
				// mochi's inflight map until PUBREL.
				if cl.State.Inflight.Set(s.h.ack(e.pk, packets.Pubrec, packets.CodeSuccess, e.at.Unix())) {
					atomic.AddInt64(&s.h.cfg.Server.Info.Inflight, 1)
				}
			}
			if e.pk.FixedHeader.Qos == 0 || e.answer {
				continue
			}
			if s.ids[e.pk.PacketID] == e {
				delete(s.ids, e.pk.PacketID)
			}
			if e.err != nil {
				continue
			}
			if e.pk.FixedHeader.Qos == 1 {
				s.rememberLocked(e.pk.PacketID, e.hash)
			} else {
				// Before the id leaves s.ids, mochi's inflight map takes
				// it over: a retransmission is then answered by mochi and
				// PUBREL by processPubrel, never appended again.
				if cl.State.Inflight.Set(s.h.ack(e.pk, packets.Pubrec, packets.CodeSuccess, e.at.Unix())) {
					atomic.AddInt64(&s.h.cfg.Server.Info.Inflight, 1)
				}
			}
		}
		if len(s.ids) == 0 {
			s.ids = nil
		}
		if len(s.queue) == 0 {
			s.queue = nil
		}
		close(s.space)
		s.space = make(chan struct{})
		s.mu.Unlock()

		s.h.completeBatch(s, cl, batch)
		s.h.completed(n)
	}
}

// ack builds an acknowledgement; created (Unix seconds) only matters for
// a PUBREC kept in mochi's inflight map, which expires it from there.
func (h *Hook) ack(pk packets.Packet, typ byte, code packets.Code, created int64) packets.Packet {
	out := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: typ},
		PacketID:    pk.PacketID,
		ReasonCode:  code.Code,
		Created:     created,
	}
	if code.Code >= packets.ErrUnspecifiedError.Code {
		out.Properties.ReasonString = code.Reason
	}
	return out
}

// completeBatch acknowledges a ready prefix of a session's queue, in
// order. Success acks are written together, in one write under the
// client's lock: one system call per commit round and client instead of
// one per message, which is most of the cost of an ack. Then the publishes
// that a local subscriber or the retained store wants go to mochi.
func (h *Hook) completeBatch(s *session, cl *mochi.Client, batch []*entry) {
	now := h.cfg.Now()
	buf := make([]byte, 0, 4*len(batch))
	for _, e := range batch {
		if e.err != nil {
			h.flushAcks(cl, buf)
			buf = buf[:0]
			h.refused(cl, e)
			continue
		}
		if q := e.pk.FixedHeader.Qos; q > 0 {
			// A success PUBACK/PUBREC needs no reason code or properties,
			// in MQTT 5 either: type, length 2, packet id.
			typ := byte(packets.Puback)
			if q == 2 {
				typ = packets.Pubrec
			}
			buf = append(buf, typ<<4, 2, byte(e.pk.PacketID>>8), byte(e.pk.PacketID))
			h.m.ackLatency.Observe(now.Sub(e.at).Seconds())
		}
	}
	h.flushAcks(cl, buf)
	for _, e := range batch {
		if e.err != nil {
			continue
		}
		if e.answer {
			h.m.ack(reasonDuplicate)
			continue
		}
		h.m.ackSuccess.Inc()
		if h.wantsFanout(s, &e.pk) {
			h.fanout(e.pk)
		}
	}
}

// flushAcks writes encoded acks under the client's write lock, the lock
// mochi's WritePacket takes, so packets never interleave.
func (h *Hook) flushAcks(cl *mochi.Client, buf []byte) {
	if len(buf) == 0 || cl.Net.Conn == nil || cl.Closed() {
		return
	}
	cl.Lock()
	n, err := cl.Net.Conn.Write(buf)
	cl.Unlock()
	atomic.AddInt64(&h.cfg.Server.Info.BytesSent, int64(n))
	atomic.AddInt64(&h.cfg.Server.Info.PacketsSent, int64(n/4))
	if err != nil {
		h.cfg.Logger.Debug("mqtt: acks not delivered; the client will resend", "client", cl.ID, "err", err)
	}
}

// refused writes a refusal (or disconnects) for a failed entry.
func (h *Hook) refused(cl *mochi.Client, e *entry) {
	qos := e.pk.FixedHeader.Qos
	typ := byte(packets.Puback)
	if qos == 2 {
		typ = packets.Pubrec
	}
	reason, code := classify(e.err)
	h.m.ack(reason)
	h.cfg.Logger.Warn("mqtt: publish refused", "client", cl.ID, "topic", e.pk.TopicName, "qos", qos, "reason", reason, "err", e.err)
	v5 := cl.Properties.ProtocolVersion == 5
	switch {
	case e.cl != cl:
		// It arrived on a connection that is gone; not acknowledged, the
		// client resends it on its new connection.
	case errors.Is(e.err, ErrPayloadTooLarge) && v5:
		_ = h.cfg.Server.DisconnectClient(cl, packets.ErrPacketTooLarge)
	case errors.Is(e.err, ErrShuttingDown) && v5:
		// Not a refusal of the message: the client resends it elsewhere or
		// after the restart.
		_ = h.cfg.Server.DisconnectClient(cl, packets.ErrServerShuttingDown)
	case errors.Is(e.err, ErrAckTimeout) && v5:
		// The record may still become durable: a negative ack could make
		// the client give up on a stored message or store it twice; a
		// disconnect makes it resend, and the resend is recognised.
		_ = h.cfg.Server.DisconnectClient(cl, packets.ErrServerBusy)
	case !v5:
		// MQTT 3.1.1 has no negative acknowledgement: close without an ack.
		cl.Stop(e.err)
	case qos > 0:
		_ = cl.WritePacket(h.ack(e.pk, typ, code, 0))
	default:
		// MQTT 5 QoS 0: nothing to answer; counted.
	}
}

func classify(err error) (string, packets.Code) {
	switch {
	case errors.Is(err, log.ErrDiskBudget):
		return reasonBudget, packets.ErrQuotaExceeded
	case errors.Is(err, ErrPayloadTooLarge), errors.Is(err, log.ErrBatchTooLarge):
		return reasonTooLarge, packets.ErrPacketTooLarge
	case errors.Is(err, ErrAckTimeout):
		return reasonTimeout, packets.ErrUnspecifiedError
	case errors.Is(err, ErrShuttingDown):
		return reasonShutdown, packets.ErrUnspecifiedError
	case errors.Is(err, log.ErrNoTopic), errors.Is(err, log.ErrNoPartition):
		return reasonBadTopic, packets.ErrUnspecifiedError
	}
	return reasonLogFailed, packets.ErrUnspecifiedError
}

// fanout delivers a durable publish to local subscribers through mochi's
// inline client, which also retains it if asked. mochi sets the inline
// client as the packet's origin; the publishing device's client id rides
// along in the packet's (otherwise unused) CONNECT fields and OnPublish
// restores it, so NoLocal subscriptions work [MQTT-3.8.3-3].
func (h *Hook) fanout(pk packets.Packet) {
	inline, ok := h.cfg.Server.Clients.Get(mochi.InlineClientId)
	if !ok || !inline.Net.Inline {
		return
	}
	pk.Connect.ClientIdentifier = pk.Origin
	pk.FixedHeader.Dup = false
	pk.Properties.TopicAlias = 0
	pk.Properties.TopicAliasFlag = false
	if err := h.cfg.Server.InjectPacket(inline, pk); err != nil {
		h.cfg.Logger.Debug("mqtt: fan-out failed", "topic", pk.TopicName, "err", err)
	}
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

// Drain refuses new publishes and waits until every queued one has been
// acknowledged or refused, or ctx ends. Call it before closing the log and
// the broker, after the listeners stopped accepting.
func (h *Hook) Drain(ctx context.Context) error {
	h.closing.Store(true)
	for h.pending.Load() > 0 {
		select {
		case <-h.idle:
		case <-ctx.Done():
			return fmt.Errorf("mqtt: drain: %d publishes still pending: %w", h.pending.Load(), ctx.Err())
		case <-time.After(50 * time.Millisecond):
			// idle is only a hint; recheck the count.
		}
	}
	return nil
}

// Pending returns the publishes queued and not yet completed.
func (h *Hook) Pending() int64 { return h.pending.Load() }

func qosLabel(q byte) string {
	switch q {
	case 0:
		return "0"
	case 1:
		return "1"
	}
	return "2"
}
