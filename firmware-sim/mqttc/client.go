package mqttc

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one client session. The zero value of a field means the
// default noted next to it.
type Config struct {
	// Broker is the broker URL: tcp://, ssl:// (also tls://, mqtts://),
	// ws:// or wss://, with host:port; ws URLs may carry a path (default /mqtt).
	// Several URLs separated by commas are a failover list (the nodes of a
	// site): the client stays on the broker it reached, and a failed
	// connect moves it to the next one for the following attempt.
	Broker string
	// ClientID is the MQTT client identifier; empty asks the broker to
	// assign one (MQTT 5) and requires CleanStart.
	ClientID string
	// Version is the protocol: 3 for MQTT 3.1.1, 5 for MQTT 5.0 (default 5).
	Version int
	// Username is sent when non-empty.
	Username string
	// Password is sent when non-empty.
	Password string
	// KeepAlive is the MQTT keep alive; 0 disables PINGREQ.
	KeepAlive time.Duration
	// CleanStart discards the broker's session at connect. When false the
	// session persists, and in-flight messages survive reconnects on both sides.
	CleanStart bool
	// SessionExpiry is how long an MQTT 5 broker keeps the session after the
	// connection drops (ignored for 3.1.1, whose sessions last until a clean
	// connect). It only matters when CleanStart is false.
	SessionExpiry time.Duration
	// Will is the Last Will published by the broker if the connection ends
	// without a DISCONNECT; nil sends none.
	Will *Message
	// TLS is used for ssl:// and wss:// brokers; nil means the system roots.
	TLS *tls.Config
	// DialTimeout bounds dialing plus CONNECT/CONNACK (default 10s).
	DialTimeout time.Duration
	// InFlight is the most QoS 1/2 messages awaiting acknowledgement at once
	// (default 1, at most 65535); a broker's Receive Maximum lowers it.
	InFlight int
	// MaxPacketBytes bounds a received packet (default 1 MiB), so a broker
	// cannot make the client allocate without limit.
	MaxPacketBytes int
}

// Message is an application message.
type Message struct {
	// Topic is the topic name.
	Topic string
	// Payload is the message body; the client keeps it until acknowledged.
	Payload []byte
	// QoS is 0, 1 or 2.
	QoS byte
	// Retain asks the broker to retain the message.
	Retain bool
	// Tag is not sent; it is handed back in Ack (a sequence number, say).
	Tag int64
}

// Ack reports the end of a QoS 1 or 2 exchange.
type Ack struct {
	// Message is the acknowledged message.
	Message *Message
	// Reason is the PUBACK, PUBREC or PUBCOMP reason code (always 0 for
	// 3.1.1); codes >= 0x80 mean the broker refused the message.
	Reason byte
	// Latency runs from the last time the PUBLISH was written (the resend
	// after a reconnect, if any) to PUBACK, or to PUBCOMP for QoS 2.
	Latency time.Duration
	// Resent reports whether the message was sent more than once.
	Resent bool
}

// Handlers are callbacks, run on the connection's reader goroutine; they
// must return quickly. Nil fields are ignored.
type Handlers struct {
	// OnAck is called once per acknowledged QoS 1/2 message. The message
	// counts as in flight (InFlight, Stats, WaitIdle) until OnAck returns,
	// so a caller that sees it leave has also seen its OnAck.
	OnAck func(Ack)
	// OnMessage is called for each PUBLISH received on a subscription; the
	// payload belongs to the callee. QoS 2 duplicates are suppressed.
	OnMessage func(topic string, payload []byte, qos byte)
	// OnPublish is called for each PUBLISH received, like OnMessage, with
	// its MQTT 5 properties (commands carry a response topic, correlation
	// data and the remaining expiry).
	OnPublish func(Received)
}

// Received is a PUBLISH the client received.
type Received struct {
	Topic   string
	Payload []byte
	QoS     byte
	// ResponseTopic, CorrelationData and MessageExpiry (seconds;
	// HasMessageExpiry) are the MQTT 5 properties; empty for 3.1.1.
	ResponseTopic    string
	CorrelationData  []byte
	MessageExpiry    uint32
	HasMessageExpiry bool
}

// ConnAck is what the broker said at connect.
type ConnAck struct {
	// SessionPresent is the CONNACK flag.
	SessionPresent bool
	// ReceiveMaximum is the broker's MQTT 5 Receive Maximum (0 if absent).
	ReceiveMaximum uint16
	// AssignedClientID is set when the broker chose the client id.
	AssignedClientID string
	// Resent counts in-flight messages resent at this connect.
	Resent int
}

type state uint8

const (
	stateAwaitAck  state = iota // PUBLISH sent, waiting for PUBACK or PUBREC
	stateAwaitComp              // PUBREL sent, waiting for PUBCOMP
)

type pending struct {
	msg    *Message
	id     uint16
	order  uint64
	state  state
	sentAt time.Time
	resent bool
}

// Client is one MQTT session. Connect, Publish, Subscribe, Flush and
// Disconnect belong to one owner goroutine; InFlight, Done and Close may
// be called from anywhere.
type Client struct {
	cfg Config
	h   Handlers
	win window
	wg  sync.WaitGroup

	// mu guards the session state below and the current connection pointer.
	mu       sync.Mutex
	pending  map[uint16]*pending
	nextID   uint16
	order    uint64
	conn     *conn
	closed   bool
	subs     map[uint16]chan []byte
	qos2Recv map[uint16]bool
	// sent, acked, refused and inflight count QoS 1/2 messages; mu guards
	// them together so that sent == acked + refused + inflight holds in
	// every snapshot. inflight is not len(pending): pending also holds
	// SUBSCRIBE reservations, and a message leaves pending before its
	// OnAck runs but leaves inflight only after OnAck has returned.
	sent     int64
	acked    int64
	refused  int64
	inflight int64

	resent atomic.Int64
	// broker indexes the broker list (Config.Broker) for the next connect.
	broker atomic.Int64
}

// Stats counts the session's QoS 1/2 messages. Sent == Acked + Refused +
// InFlight holds in every value Stats returns.
type Stats struct {
	// Sent counts messages Publish took (returned nil for).
	Sent int64
	// Acked counts messages whose OnAck reported a reason below 0x80 and
	// has returned.
	Acked int64
	// Refused counts messages whose OnAck reported a reason of 0x80 or
	// more and has returned.
	Refused int64
	// InFlight counts messages taken and not yet reported through OnAck.
	InFlight int64
	// Resent counts PUBLISH and PUBREL resends after reconnects.
	Resent int64
}

// New returns a client; it does not connect.
func New(cfg Config, h Handlers) *Client {
	if cfg.Version == 0 {
		cfg.Version = 5
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 1
	}
	if cfg.InFlight > 65535 {
		cfg.InFlight = 65535
	}
	if cfg.MaxPacketBytes <= 0 {
		cfg.MaxPacketBytes = 1 << 20
	}
	c := &Client{
		cfg:      cfg,
		h:        h,
		pending:  make(map[uint16]*pending),
		subs:     make(map[uint16]chan []byte),
		qos2Recv: make(map[uint16]bool),
	}
	c.win.init(cfg.InFlight)
	return c
}

// conn is one network connection of the session.
type conn struct {
	nc      net.Conn
	version int
	br      *bufio.Reader
	done    chan struct{}
	errMu   sync.Mutex
	err     error
	closeMu sync.Once

	// wmu serializes writers on bw: the owner's publishes and the control
	// goroutine's acknowledgements and pings.
	wmu       sync.Mutex
	bw        *bufio.Writer
	lastWrite atomic.Int64
	lastRead  atomic.Int64

	ctrlMu sync.Mutex
	ctrl   [][]byte
	kick   chan struct{}

	// pingsSent and pingsRecv order PINGREQ/PINGRESP pairs, so Ping can
	// wait for the answer to its own request (brokers answer in order).
	pingsSent atomic.Int64
	pingsRecv atomic.Int64
	pingWake  chan struct{}
}

func (cn *conn) fail(err error) {
	cn.closeMu.Do(func() {
		cn.errMu.Lock()
		cn.err = err
		cn.errMu.Unlock()
		_ = cn.nc.Close()
		close(cn.done)
	})
}

func (cn *conn) cause() error {
	cn.errMu.Lock()
	defer cn.errMu.Unlock()
	return cn.err
}

// queueControl hands a small packet to the control goroutine, so the reader
// never blocks on a write: a broker that stops reading while its socket is
// full would otherwise deadlock both sides.
func (cn *conn) queueControl(pkt []byte) {
	cn.ctrlMu.Lock()
	cn.ctrl = append(cn.ctrl, pkt)
	cn.ctrlMu.Unlock()
	select {
	case cn.kick <- struct{}{}:
	default:
	}
}

// Connect dials the broker, performs CONNECT/CONNACK, resends the session's
// in-flight messages and starts the connection's goroutines.
func (c *Client) Connect(ctx context.Context) (ConnAck, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ConnAck{}, ErrClosed
	}
	if c.conn != nil {
		select {
		case <-c.conn.done:
		default:
			c.mu.Unlock()
			return ConnAck{}, fmt.Errorf("mqttc: connect: already connected")
		}
	}
	c.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	brokers := strings.Split(c.cfg.Broker, ",")
	i := c.broker.Load()
	broker := strings.TrimSpace(brokers[int(i%int64(len(brokers)))])
	// A failed attempt moves the next one to the next broker of the list;
	// a working broker is kept.
	failover := func() { c.broker.CompareAndSwap(i, i+1) }
	nc, err := dial(dctx, c.cfg, broker)
	if err != nil {
		failover()
		return ConnAck{}, fmt.Errorf("mqttc: connect %s: %w", broker, err)
	}
	if dl, ok := dctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(dctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	cn := &conn{
		nc:       nc,
		version:  c.cfg.Version,
		br:       bufio.NewReaderSize(nc, 32<<10),
		bw:       bufio.NewWriterSize(nc, 64<<10),
		done:     make(chan struct{}),
		kick:     make(chan struct{}, 1),
		pingWake: make(chan struct{}, 1),
	}
	ack, rm, err := c.handshake(cn)
	stop()
	if err != nil {
		_ = nc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		failover()
		return ConnAck{}, fmt.Errorf("mqttc: connect %s: %w", broker, err)
	}
	_ = nc.SetDeadline(time.Time{})
	now := time.Now().UnixNano()
	cn.lastRead.Store(now)
	cn.lastWrite.Store(now)

	limit := c.cfg.InFlight
	if rm > 0 && int(rm) < limit {
		limit = int(rm)
	}
	c.win.setLimit(limit)

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = nc.Close()
		return ConnAck{}, ErrClosed
	}
	c.conn = cn
	c.wg.Add(2) // under mu, so Close cannot be waiting already
	resend := make([]*pending, 0, len(c.pending))
	for _, p := range c.pending {
		if p != nil { // nil reserves a SUBSCRIBE id
			resend = append(resend, p)
		}
	}
	slices.SortFunc(resend, func(a, b *pending) int { return cmp.Compare(a.order, b.order) })
	t := time.Now()
	for _, p := range resend {
		p.sentAt = t
		p.resent = true
	}
	// Copy what the writes below need: the reader may complete and drop a
	// pending entry as soon as its resend is on the wire.
	type resendItem struct {
		msg   *Message
		id    uint16
		state state
	}
	items := make([]resendItem, len(resend))
	for i, p := range resend {
		items[i] = resendItem{p.msg, p.id, p.state}
	}
	c.mu.Unlock()

	go c.readLoop(cn)
	go c.controlLoop(cn)

	cn.wmu.Lock()
	for _, it := range items {
		if it.state == stateAwaitComp {
			err = c.writeAck(cn, pktPubrel|0x02, it.id)
		} else {
			err = c.writePublish(cn, it.msg, it.id, true)
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = cn.bw.Flush()
	}
	cn.wmu.Unlock()
	if err != nil {
		cn.fail(err)
	}
	c.resent.Add(int64(len(items)))
	ack.Resent = len(items)
	return ack, nil
}

func (c *Client) handshake(cn *conn) (ConnAck, uint16, error) {
	if _, err := cn.bw.Write(c.encodeConnect()); err != nil {
		return ConnAck{}, 0, err
	}
	if err := cn.bw.Flush(); err != nil {
		return ConnAck{}, 0, err
	}
	var buf [256]byte
	for {
		hdr, body, err := readPacket(cn.br, buf[:], c.cfg.MaxPacketBytes)
		if err != nil {
			return ConnAck{}, 0, err
		}
		switch hdr & 0xf0 {
		case pktAuth:
			continue // no enhanced authentication is offered, so ignore
		case pktConnack:
		default:
			return ConnAck{}, 0, fmt.Errorf("%w: packet type 0x%02x before CONNACK", ErrProtocol, hdr)
		}
		d := decoder{b: body}
		flags := d.byte1()
		code := d.byte1()
		var p props
		if c.cfg.Version == 5 && len(d.b) > 0 {
			p = d.properties()
		}
		if d.err != nil {
			return ConnAck{}, 0, d.err
		}
		if code != 0 {
			return ConnAck{}, 0, &ConnectError{Reason: code, Version: c.cfg.Version}
		}
		return ConnAck{
			SessionPresent:   flags&1 == 1,
			ReceiveMaximum:   p.receiveMaximum,
			AssignedClientID: p.assignedClientID,
		}, p.receiveMaximum, nil
	}
}

func (c *Client) encodeConnect() []byte {
	v5 := c.cfg.Version == 5
	var vh []byte
	vh = appendString(vh, "MQTT")
	if v5 {
		vh = append(vh, 5)
	} else {
		vh = append(vh, 4)
	}
	var flags byte
	if c.cfg.CleanStart {
		flags |= 0x02
	}
	if w := c.cfg.Will; w != nil {
		flags |= 0x04 | (w.QoS&3)<<3
		if w.Retain {
			flags |= 0x20
		}
	}
	if c.cfg.Password != "" {
		flags |= 0x40
	}
	if c.cfg.Username != "" {
		flags |= 0x80
	}
	vh = append(vh, flags)
	vh = binary.BigEndian.AppendUint16(vh, uint16(min(c.cfg.KeepAlive/time.Second, 65535)))
	if v5 {
		var pr []byte
		if exp := c.cfg.SessionExpiry / time.Second; exp > 0 && !c.cfg.CleanStart {
			pr = append(pr, propSessionExpiry)
			pr = binary.BigEndian.AppendUint32(pr, uint32(min(exp, 0xFFFFFFFF)))
		}
		pr = append(pr, propMaximumPacket)
		pr = binary.BigEndian.AppendUint32(pr, uint32(c.cfg.MaxPacketBytes))
		vh = appendVarint(vh, len(pr))
		vh = append(vh, pr...)
	}
	vh = appendString(vh, c.cfg.ClientID)
	if w := c.cfg.Will; w != nil {
		if v5 {
			vh = append(vh, 0) // no will properties
		}
		vh = appendString(vh, w.Topic)
		vh = appendBytes(vh, w.Payload)
	}
	if c.cfg.Username != "" {
		vh = appendString(vh, c.cfg.Username)
	}
	if c.cfg.Password != "" {
		vh = appendString(vh, c.cfg.Password)
	}
	pkt := []byte{pktConnect}
	pkt = appendVarint(pkt, len(vh))
	return append(pkt, vh...)
}

// writePublish encodes a PUBLISH into the buffer; cn.wmu must be held.
func (c *Client) writePublish(cn *conn, m *Message, id uint16, dup bool) error {
	var hdr [16]byte
	h := hdr[:0]
	b0 := pktPublish | (m.QoS&3)<<1
	if dup && m.QoS > 0 {
		b0 |= 0x08
	}
	if m.Retain {
		b0 |= 0x01
	}
	n := 2 + len(m.Topic) + len(m.Payload)
	if m.QoS > 0 {
		n += 2
	}
	if cn.version == 5 {
		n++ // empty property block
	}
	h = append(h, b0)
	h = appendVarint(h, n)
	h = binary.BigEndian.AppendUint16(h, uint16(len(m.Topic)))
	bw := cn.bw
	bw.Write(h)
	bw.WriteString(m.Topic)
	h = h[:0]
	if m.QoS > 0 {
		h = binary.BigEndian.AppendUint16(h, id)
	}
	if cn.version == 5 {
		h = append(h, 0)
	}
	bw.Write(h)
	_, err := bw.Write(m.Payload)
	cn.lastWrite.Store(time.Now().UnixNano())
	return err
}

// writeAck encodes a two-byte-id acknowledgement; cn.wmu must be held.
func (c *Client) writeAck(cn *conn, b0 byte, id uint16) error {
	_, err := cn.bw.Write([]byte{b0, 2, byte(id >> 8), byte(id)})
	cn.lastWrite.Store(time.Now().UnixNano())
	return err
}

func (c *Client) current() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// Done returns a channel closed when the current connection ends (already
// closed if there is none).
func (c *Client) Done() <-chan struct{} {
	if cn := c.current(); cn != nil {
		return cn.done
	}
	ch := make(chan struct{})
	close(ch)
	return ch
}

// Err returns why the last connection ended, or nil while it is up.
func (c *Client) Err() error {
	cn := c.current()
	if cn == nil {
		return ErrNotConnected
	}
	return cn.cause()
}

// Publish sends m. For QoS 1 and 2 it first waits for a free slot in the
// in-flight window, flushing buffered publishes before it waits. The write
// goes to a buffer: call Flush when no further publish follows soon.
//
// A nil error means the message is taken: a QoS 1/2 message stays in the
// session until acknowledged, across reconnects, even if this connection
// fails now. An error means it was not taken (no connection, or ctx done).
func (c *Client) Publish(ctx context.Context, m *Message) error {
	cn := c.current()
	if cn == nil {
		return ErrNotConnected
	}
	select {
	case <-cn.done:
		return fmt.Errorf("%w: %w", ErrNotConnected, cn.cause())
	default:
	}
	if m.QoS == 0 {
		cn.wmu.Lock()
		err := c.writePublish(cn, m, 0, false)
		cn.wmu.Unlock()
		if err != nil {
			cn.fail(err)
			return fmt.Errorf("mqttc: publish: %w", err)
		}
		return nil
	}
	if !c.win.tryAcquire() {
		if err := c.Flush(); err != nil {
			return fmt.Errorf("%w: %w", ErrNotConnected, err)
		}
		if err := c.win.acquire(ctx, cn.done); err != nil {
			if cn.cause() != nil {
				return fmt.Errorf("%w: %w", ErrNotConnected, cn.cause())
			}
			return err
		}
	}
	c.mu.Lock()
	id := c.allocIDLocked()
	c.order++
	c.pending[id] = &pending{msg: m, id: id, order: c.order, sentAt: time.Now()}
	c.sent++
	c.inflight++
	c.mu.Unlock()
	cn.wmu.Lock()
	err := c.writePublish(cn, m, id, false)
	cn.wmu.Unlock()
	if err != nil {
		cn.fail(err) // the message stays pending and is resent by Connect
	}
	return nil
}

// allocIDLocked returns a packet id not in use; mu must be held, and the
// window guarantees fewer than 65535 are in use.
func (c *Client) allocIDLocked() uint16 {
	for {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		if _, used := c.pending[c.nextID]; !used {
			return c.nextID
		}
	}
}

// Flush writes buffered packets to the network.
func (c *Client) Flush() error {
	cn := c.current()
	if cn == nil {
		return ErrNotConnected
	}
	cn.wmu.Lock()
	err := cn.bw.Flush()
	cn.wmu.Unlock()
	if err != nil {
		cn.fail(err)
		return fmt.Errorf("mqttc: flush: %w", err)
	}
	return nil
}

// InFlight returns the number of QoS 1/2 messages not yet acknowledged,
// counting a message until its OnAck has returned.
func (c *Client) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.inflight)
}

// Stats returns the session's message counters, taken together.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Sent: c.sent, Acked: c.acked, Refused: c.refused, InFlight: c.inflight, Resent: c.resent.Load()}
}

// Resent returns how many messages were resent after reconnects.
func (c *Client) Resent() int64 { return c.resent.Load() }

// WaitIdle flushes, then blocks until no message is in flight, the
// connection ends, or ctx is done.
func (c *Client) WaitIdle(ctx context.Context) error {
	cn := c.current()
	if cn == nil {
		return ErrNotConnected
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	for {
		if c.InFlight() == 0 {
			return nil
		}
		select {
		case <-c.win.idle:
		case <-cn.done:
			if c.InFlight() == 0 {
				return nil
			}
			return fmt.Errorf("%w: %w", ErrNotConnected, cn.cause())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Subscribe subscribes to filters at qos and waits for the SUBACK; it
// returns the granted QoS or failure code per filter.
func (c *Client) Subscribe(ctx context.Context, qos byte, filters ...string) ([]byte, error) {
	cn := c.current()
	if cn == nil {
		return nil, ErrNotConnected
	}
	c.mu.Lock()
	id := c.allocIDLocked()
	c.pending[id] = nil // reserve the id; the reader ignores nil entries
	ch := make(chan []byte, 1)
	c.subs[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		delete(c.subs, id)
		c.mu.Unlock()
	}()
	var vh []byte
	vh = binary.BigEndian.AppendUint16(vh, id)
	if cn.version == 5 {
		vh = append(vh, 0)
	}
	for _, f := range filters {
		vh = appendString(vh, f)
		vh = append(vh, qos&3)
	}
	pkt := appendVarint([]byte{pktSubscribe | 0x02}, len(vh))
	pkt = append(pkt, vh...)
	cn.wmu.Lock()
	_, err := cn.bw.Write(pkt)
	if err == nil {
		err = cn.bw.Flush()
	}
	cn.wmu.Unlock()
	if err != nil {
		cn.fail(err)
		return nil, fmt.Errorf("mqttc: subscribe: %w", err)
	}
	select {
	case codes := <-ch:
		for i, code := range codes {
			if code >= 0x80 {
				return codes, fmt.Errorf("mqttc: subscribe %q refused: %s", filters[min(i, len(filters)-1)], ReasonName(code))
			}
		}
		return codes, nil
	case <-cn.done:
		return nil, fmt.Errorf("mqttc: subscribe: %w: %w", ErrNotConnected, cn.cause())
	case <-ctx.Done():
		return nil, fmt.Errorf("mqttc: subscribe: %w", ctx.Err())
	}
}

// Ping flushes, sends PINGREQ and waits for its PINGRESP. A broker reads a
// connection's packets in order, so the answer also means it has read and
// processed every PUBLISH sent before: the end-of-run fence for QoS 0, which
// has no acknowledgement of its own.
func (c *Client) Ping(ctx context.Context) error {
	cn := c.current()
	if cn == nil {
		return ErrNotConnected
	}
	cn.wmu.Lock()
	want := cn.pingsSent.Add(1)
	_, err := cn.bw.Write([]byte{pktPingreq, 0})
	if err == nil {
		err = cn.bw.Flush()
	}
	cn.lastWrite.Store(time.Now().UnixNano())
	cn.wmu.Unlock()
	if err != nil {
		cn.fail(err)
		return fmt.Errorf("mqttc: ping: %w: %w", ErrNotConnected, err)
	}
	for cn.pingsRecv.Load() < want {
		select {
		case <-cn.pingWake:
		case <-cn.done:
			return fmt.Errorf("mqttc: ping: %w: %w", ErrNotConnected, cn.cause())
		case <-ctx.Done():
			return fmt.Errorf("mqttc: ping: %w", ctx.Err())
		}
	}
	return nil
}

// Disconnect sends DISCONNECT (normal disconnection, so the broker discards
// the Will) and closes the connection. In-flight messages stay in the
// session.
func (c *Client) Disconnect() error {
	cn := c.current()
	if cn == nil {
		return nil
	}
	cn.wmu.Lock()
	var err error
	if cn.version == 5 {
		_, err = cn.bw.Write([]byte{pktDisconnect, 1, 0x00})
	} else {
		_, err = cn.bw.Write([]byte{pktDisconnect, 0})
	}
	if err == nil {
		err = cn.bw.Flush()
	}
	cn.wmu.Unlock()
	cn.fail(errDisconnected)
	<-cn.done
	if err != nil {
		return fmt.Errorf("mqttc: disconnect: %w", err)
	}
	return nil
}

var errDisconnected = errors.New("mqttc: disconnected by client")

// Drop closes the network connection without DISCONNECT, as a device that
// loses power or signal does; the broker publishes the Will.
func (c *Client) Drop() {
	if cn := c.current(); cn != nil {
		cn.fail(errors.New("mqttc: connection dropped by client"))
	}
}

// Close drops the connection and waits for the client's goroutines.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	cn := c.conn
	c.mu.Unlock()
	if cn != nil {
		cn.fail(ErrClosed)
	}
	c.wg.Wait()
}

func (c *Client) readLoop(cn *conn) {
	defer c.wg.Done()
	buf := make([]byte, 512)
	for {
		hdr, body, err := readPacket(cn.br, buf, c.cfg.MaxPacketBytes)
		if err != nil {
			cn.fail(err)
			return
		}
		select {
		case <-cn.done:
			return // buffered packets of a closed connection are stale
		default:
		}
		cn.lastRead.Store(time.Now().UnixNano())
		if err := c.handle(cn, hdr, body); err != nil {
			cn.fail(err)
			return
		}
	}
}

func (c *Client) handle(cn *conn, hdr byte, body []byte) error {
	d := decoder{b: body}
	switch hdr & 0xf0 {
	case pktPuback, pktPubrec, pktPubcomp:
		id := d.u16()
		var reason byte
		if len(d.b) > 0 {
			reason = d.byte1()
		}
		if d.err != nil {
			return d.err
		}
		c.onAck(cn, hdr&0xf0, id, reason)
	case pktPingresp:
		cn.pingsRecv.Add(1)
		select {
		case cn.pingWake <- struct{}{}:
		default:
		}
	case pktUnsuback, pktAuth:
	case pktSuback:
		id := d.u16()
		if cn.version == 5 {
			d.properties()
		}
		if d.err != nil {
			return d.err
		}
		c.mu.Lock()
		ch := c.subs[id]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- slices.Clone(d.b):
			default:
			}
		}
	case pktPublish:
		return c.onPublish(cn, hdr, &d)
	case pktPubrel:
		id := d.u16()
		if d.err != nil {
			return d.err
		}
		c.mu.Lock()
		delete(c.qos2Recv, id)
		c.mu.Unlock()
		cn.queueControl([]byte{pktPubcomp, 2, byte(id >> 8), byte(id)})
	case pktDisconnect:
		var reason byte
		if len(d.b) > 0 {
			reason = d.byte1()
		}
		return &DisconnectError{Reason: reason}
	default:
		return fmt.Errorf("%w: unexpected packet type 0x%02x", ErrProtocol, hdr)
	}
	return nil
}

func (c *Client) onAck(cn *conn, kind byte, id uint16, reason byte) {
	now := time.Now()
	c.mu.Lock()
	if c.conn != cn {
		// The reader of a dead connection may still hold buffered acks. The
		// message was resent on the new connection, maybe under an id now
		// reused for another message, so only the new connection's acks count.
		c.mu.Unlock()
		return
	}
	p, ok := c.pending[id]
	if !ok || p == nil {
		c.mu.Unlock()
		return // a late ack for a message already completed: ignore
	}
	if kind == pktPubrec && reason == 0x91 && p.resent {
		// "Packet identifier in use" answering a DUP resend means the broker
		// already holds this very message (mochi answers so, [MQTT-4.3.3-10]):
		// finish the exchange instead of counting a refusal.
		reason = 0
	}
	if kind == pktPubrec && reason < 0x80 {
		p.state = stateAwaitComp
		c.mu.Unlock()
		cn.queueControl([]byte{pktPubrel | 0x02, 2, byte(id >> 8), byte(id)})
		return
	}
	if kind == pktPubcomp && p.state != stateAwaitComp {
		c.mu.Unlock()
		return
	}
	if kind == pktPubcomp && reason == 0x92 && p.resent {
		// The broker forgot the id of a PUBREL we resent: it completed the
		// exchange before the connection dropped and its PUBCOMP was lost.
		// It took the message at PUBREC, so this is a success.
		reason = 0
	}
	// The id is free for reuse at once, but the message stays counted in
	// flight until OnAck has returned: otherwise InFlight and WaitIdle could
	// report it gone while the caller's own ack count still lacks it, and
	// firmware-sim would report an ack as missing.
	delete(c.pending, id)
	ack := Ack{Message: p.msg, Reason: reason, Latency: now.Sub(p.sentAt), Resent: p.resent}
	c.mu.Unlock()
	if c.h.OnAck != nil {
		c.h.OnAck(ack)
	}
	c.mu.Lock()
	c.inflight--
	if reason >= 0x80 {
		c.refused++
	} else {
		c.acked++
	}
	c.mu.Unlock()
	// Released last, so the window's idle signal, which wakes WaitIdle,
	// comes after the counters moved.
	c.win.release()
}

func (c *Client) onPublish(cn *conn, hdr byte, d *decoder) error {
	qos := (hdr >> 1) & 3
	topic := d.str()
	var id uint16
	if qos > 0 {
		id = d.u16()
	}
	var p props
	if cn.version == 5 {
		p = d.properties()
	}
	if d.err != nil {
		return d.err
	}
	if qos == 3 {
		return fmt.Errorf("%w: PUBLISH with QoS 3", ErrProtocol)
	}
	deliver := true
	if qos == 2 {
		c.mu.Lock()
		deliver = !c.qos2Recv[id]
		c.qos2Recv[id] = true
		c.mu.Unlock()
	}
	if deliver && c.h.OnMessage != nil {
		c.h.OnMessage(topic, d.b, qos)
	}
	if deliver && c.h.OnPublish != nil {
		c.h.OnPublish(Received{Topic: topic, Payload: d.b, QoS: qos, ResponseTopic: p.responseTopic,
			CorrelationData: p.correlationData, MessageExpiry: p.messageExpiry, HasMessageExpiry: p.hasMessageExpiry})
	}
	switch qos {
	case 1:
		cn.queueControl([]byte{pktPuback, 2, byte(id >> 8), byte(id)})
	case 2:
		cn.queueControl([]byte{pktPubrec, 2, byte(id >> 8), byte(id)})
	}
	return nil
}

// controlLoop writes queued acknowledgements and keeps the connection
// alive: PINGREQ when nothing was written for a while, and a drop when the
// broker has been silent for 1.5 keep alive periods [MQTT-3.1.2-24].
func (c *Client) controlLoop(cn *conn) {
	defer c.wg.Done()
	var tick <-chan time.Time
	ka := c.cfg.KeepAlive
	if ka > 0 {
		t := time.NewTicker(ka / 4)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-cn.done:
			return
		case <-cn.kick:
			cn.ctrlMu.Lock()
			pkts := cn.ctrl
			cn.ctrl = nil
			cn.ctrlMu.Unlock()
			cn.wmu.Lock()
			var err error
			for _, p := range pkts {
				if _, err = cn.bw.Write(p); err != nil {
					break
				}
			}
			if err == nil {
				err = cn.bw.Flush()
			}
			cn.lastWrite.Store(time.Now().UnixNano())
			cn.wmu.Unlock()
			if err != nil {
				cn.fail(err)
				return
			}
		case now := <-tick:
			if now.UnixNano()-cn.lastRead.Load() > int64(ka)*3/2 {
				cn.fail(fmt.Errorf("mqttc: no packet from broker for %v (keep alive %v)", time.Duration(now.UnixNano()-cn.lastRead.Load()), ka))
				return
			}
			if now.UnixNano()-cn.lastWrite.Load() >= int64(ka)/2 {
				cn.wmu.Lock()
				cn.pingsSent.Add(1)
				_, err := cn.bw.Write([]byte{pktPingreq, 0})
				if err == nil {
					err = cn.bw.Flush()
				}
				cn.lastWrite.Store(time.Now().UnixNano())
				cn.wmu.Unlock()
				if err != nil {
					cn.fail(err)
					return
				}
			}
		}
	}
}

// window is the in-flight limit. One goroutine acquires; any releases.
//
// Once full, the window refills in batches: a waiting publisher resumes
// only when an eighth of it (at least one slot) is free. Refilling one slot
// per ack costs a wake-up and a write syscall per message, which made the
// generator CPU-bound against brokers that send each PUBACK in its own
// segment; batches keep the window at least 7/8 full instead.
type window struct {
	mu    sync.Mutex
	used  int
	limit int
	wake  chan struct{}
	idle  chan struct{}
}

func (w *window) init(limit int) {
	w.limit = limit
	w.wake = make(chan struct{}, 1)
	w.idle = make(chan struct{}, 1)
}

func (w *window) setLimit(n int) {
	w.mu.Lock()
	w.limit = n
	w.mu.Unlock()
	w.signal()
}

func (w *window) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// resumeLocked is the fill level at which a waiting publisher resumes;
// mu must be held.
func (w *window) resumeLocked() int {
	return w.limit - max(1, w.limit/8)
}

func (w *window) tryAcquire() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.used < w.limit {
		w.used++
		return true
	}
	return false
}

// acquire waits until the window has drained to its resume level, then
// takes a slot.
func (w *window) acquire(ctx context.Context, done <-chan struct{}) error {
	for {
		w.mu.Lock()
		if w.used <= w.resumeLocked() {
			w.used++
			w.mu.Unlock()
			return nil
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-done:
			return ErrNotConnected
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (w *window) release() {
	w.mu.Lock()
	w.used--
	resume := w.used <= w.resumeLocked()
	idle := w.used == 0
	w.mu.Unlock()
	if resume {
		w.signal()
	}
	if idle {
		select {
		case w.idle <- struct{}{}:
		default:
		}
	}
}

func dial(ctx context.Context, cfg Config, broker string) (net.Conn, error) {
	u, err := url.Parse(broker)
	if err != nil {
		return nil, fmt.Errorf("broker URL: %w", err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("broker URL %q has no host:port (want e.g. tcp://127.0.0.1:1883)", broker)
	}
	var d net.Dialer
	switch u.Scheme {
	case "tcp", "mqtt":
		nc, err := d.DialContext(ctx, "tcp", hostPort(u, "1883"))
		if err != nil {
			return nil, err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		return nc, nil
	case "ssl", "tls", "mqtts", "tcps":
		td := tls.Dialer{NetDialer: &d, Config: tlsConfig(cfg.TLS, u)}
		return td.DialContext(ctx, "tcp", hostPort(u, "8883"))
	case "ws", "wss":
		return dialWebsocket(ctx, u, tlsConfig(cfg.TLS, u))
	}
	return nil, fmt.Errorf("broker URL scheme %q not supported (use tcp, ssl, ws or wss)", u.Scheme)
}

func hostPort(u *url.URL, port string) string {
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), port)
	}
	return u.Host
}

func tlsConfig(base *tls.Config, u *url.URL) *tls.Config {
	var tc *tls.Config
	if base != nil {
		tc = base.Clone()
	} else {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	return tc
}
