package mqtt_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/bridge/mqtt"
	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/mochifix"
	"github.com/outpost-edge/outpost/internal/polltest"
)

// waitFor polls f until it returns nil or timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	polltest.Until(tb, timeout, f)
}

// gate wraps the log's files so that a test can hold back fdatasync of
// matching files and count syncs.
type gate struct {
	mu      sync.Mutex
	match   func(name string) bool // mu; nil holds nothing
	release chan struct{}          // mu
	entered chan string
	syncs   atomic.Int64
}

func newGate() *gate { return &gate{entered: make(chan string, 1024)} }

// hold makes syncs of files matching f block until open is called.
func (g *gate) hold(f func(string) bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.match = f
	g.release = make(chan struct{})
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release != nil {
		close(g.release)
	}
	g.match, g.release = nil, nil
}

func (g *gate) openFile(name string, flag int, perm os.FileMode) (log.File, error) {
	f, err := log.OSOpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &gatedFile{File: f, name: name, g: g}, nil
}

type gatedFile struct {
	log.File
	name string
	g    *gate
}

func (f *gatedFile) Sync() error {
	f.g.mu.Lock()
	var wait chan struct{}
	if f.g.match != nil && f.g.match(f.name) {
		wait = f.g.release
	}
	f.g.mu.Unlock()
	if wait != nil {
		select {
		case f.g.entered <- f.name:
		default:
		}
		<-wait
	}
	f.g.syncs.Add(1)
	return f.File.Sync()
}

type env struct {
	log    *log.Log
	srv    *mochi.Server
	hook   *mqtt.Hook
	router *route.Router
	gate   *gate
	addr   string
	reg    *prometheus.Registry
}

type envOpts struct {
	logCfg  func(*log.Config)
	hookCfg func(*mqtt.Config)
	routes  route.Config
	caps    func(*mochi.Capabilities)
	// listener serves through the package's Listener, as the node does
	// (QoS 0 bursts), instead of mochi's TCP listener.
	listener bool
	// limits are the Listener's gate limits; nil means DefaultLimits.
	limits *mqtt.Limits
	// brokerLog is mochi's logger; nil means testLogger.
	brokerLog *slog.Logger
}

func testLogger(tb testing.TB) *slog.Logger {
	if os.Getenv("OUTPOST_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newEnv starts a log, a mochi server on 127.0.0.1:0 and the ingest hook.
func newEnv(tb testing.TB, o envOpts) *env {
	tb.Helper()
	g := newGate()
	lc := log.DefaultConfig()
	lc.OpenFile = g.openFile
	lc.Logger = testLogger(tb)
	if o.logCfg != nil {
		o.logCfg(&lc)
	}
	l, err := log.Open(tb.TempDir(), lc)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := route.New(o.routes)
	if err != nil {
		tb.Fatal(err)
	}
	for _, t := range r.Topics() {
		if err := l.CreateTopic(t.Name, log.TopicConfig{Partitions: t.Partitions}); err != nil {
			tb.Fatal(err)
		}
	}
	caps := mochi.NewDefaultServerCapabilities()
	if o.caps != nil {
		o.caps(caps)
	}
	brokerLog := o.brokerLog
	if brokerLog == nil {
		brokerLog = testLogger(tb)
	}
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: brokerLog, Capabilities: caps})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		tb.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	hc := mqtt.Config{Log: l, Router: r, Server: srv, Registerer: reg, Logger: testLogger(tb)}
	if o.hookCfg != nil {
		o.hookCfg(&hc)
	}
	h, err := mqtt.New(hc)
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.AddHook(h, nil); err != nil {
		tb.Fatal(err)
	}
	var tcp interface {
		listeners.Listener
		Address() string
	}
	if o.listener {
		limits := mqtt.DefaultLimits()
		if o.limits != nil {
			limits = *o.limits
		}
		ln, err := mqtt.NewListener(mqtt.ListenerConfig{ID: "t1", Type: mqtt.TypeTCP, Address: "127.0.0.1:0", Gate: mqtt.NewGate(limits, nil), Server: srv})
		if err != nil {
			tb.Fatal(err)
		}
		tcp = ln
	} else {
		tcp = mochifix.Listener{Listener: listeners.NewTCP(listeners.Config{ID: "t1", Address: "127.0.0.1:0"}), Server: srv}
	}
	if err := srv.AddListener(tcp); err != nil {
		tb.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { h.Run(ctx); close(runDone) }()
	tb.Cleanup(func() {
		g.open()
		cancel()
		<-runDone
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		if err := h.Drain(dctx); err != nil {
			tb.Errorf("drain: %v", err)
		}
		srv.Close()
		if err := h.Close(); err != nil {
			tb.Errorf("hook close: %v", err)
		}
		l.Close()
	})
	return &env{log: l, srv: srv, hook: h, router: r, gate: g, addr: tcp.Address(), reg: reg}
}

// records reads every record of a log topic partition.
func (e *env) records(tb testing.TB, topic string, p int32) []log.Record {
	tb.Helper()
	part, err := e.log.Partition(topic, p)
	if err != nil {
		tb.Fatal(err)
	}
	var out []log.Record
	for off := part.StartOffset(); off < part.EndOffset(); {
		recs, err := part.Read(context.Background(), off, 1<<20)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, recs...)
		off += int64(len(recs))
	}
	return out
}

// all reads every record of every partition of topic.
func (e *env) all(tb testing.TB, topic string) []log.Record {
	tb.Helper()
	cfg, err := e.log.TopicConfig(topic)
	if err != nil {
		tb.Fatal(err)
	}
	var out []log.Record
	for p := int32(0); p < cfg.Partitions; p++ {
		out = append(out, e.records(tb, topic, p)...)
	}
	return out
}

func (e *env) counter(tb testing.TB, name, label, value string) float64 {
	tb.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
			if label == "" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func header(r log.Record, k string) string {
	v, _ := r.Header(k)
	return string(v)
}

// raw is a hand-driven MQTT client: it writes packets exactly as the test
// says (pipelined, duplicated) and reports every packet the broker sends.
type raw struct {
	tb      testing.TB
	conn    net.Conn
	version byte
	in      chan packets.Packet
	err     atomic.Value
}

func dialRaw(tb testing.TB, addr, id string, version byte) *raw {
	tb.Helper()
	return dialRawSession(tb, addr, id, version, true)
}

// dialRawSession connects with clean start (or session) as given; with
// clean false, a 3.1.1 session persists after disconnect.
func dialRawSession(tb testing.TB, addr, id string, version byte, clean bool) *raw {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	r := &raw{tb: tb, conn: c, version: version, in: make(chan packets.Packet, 4096)}
	tb.Cleanup(func() { c.Close() })
	go r.readLoop()
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            clean,
			Keepalive:        60,
			ClientIdentifier: id,
		},
	}
	if version == 4 {
		pk.Connect.ProtocolName = []byte("MQTT")
	}
	r.send(pk)
	ack := r.next(5 * time.Second)
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		tb.Fatalf("connect: got %v code %#x", ack.FixedHeader.Type, ack.ReasonCode)
	}
	return r
}

func (r *raw) send(pk packets.Packet) {
	r.tb.Helper()
	pk.ProtocolVersion = r.version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		err = fmt.Errorf("raw: cannot send %v", pk.FixedHeader.Type)
	}
	if err != nil {
		r.tb.Fatal(err)
	}
	if _, err := r.conn.Write(buf.Bytes()); err != nil {
		r.tb.Fatalf("raw write: %v", err)
	}
}

// encode returns pk as the bytes on the wire.
func (r *raw) encode(pk packets.Packet) []byte {
	r.tb.Helper()
	pk.ProtocolVersion = r.version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		err = fmt.Errorf("raw: cannot encode %v", pk.FixedHeader.Type)
	}
	if err != nil {
		r.tb.Fatal(err)
	}
	return buf.Bytes()
}

// write sends bytes in one write, so that the broker reads them at once.
func (r *raw) write(b []byte) {
	r.tb.Helper()
	if _, err := r.conn.Write(b); err != nil {
		r.tb.Fatalf("raw write: %v", err)
	}
}

func (r *raw) publish(id uint16, qos byte, topic, payload string, dup bool) {
	r.tb.Helper()
	r.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Dup: dup},
		PacketID:    id,
		TopicName:   topic,
		Payload:     []byte(payload),
	})
}

func (r *raw) readLoop() {
	defer close(r.in)
	br := bufio.NewReader(r.conn)
	for {
		b, err := br.ReadByte()
		if err != nil {
			r.err.Store(err)
			return
		}
		var fh packets.FixedHeader
		if err := fh.Decode(b); err != nil {
			r.err.Store(err)
			return
		}
		n, _, err := packets.DecodeLength(br)
		if err != nil {
			r.err.Store(err)
			return
		}
		fh.Remaining = n
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			r.err.Store(err)
			return
		}
		pk := packets.Packet{FixedHeader: fh, ProtocolVersion: r.version}
		switch fh.Type {
		case packets.Connack:
			err = pk.ConnackDecode(body)
		case packets.Puback:
			err = pk.PubackDecode(body)
		case packets.Pubrec:
			err = pk.PubrecDecode(body)
		case packets.Pubcomp:
			err = pk.PubcompDecode(body)
		case packets.Publish:
			err = pk.PublishDecode(body)
		case packets.Disconnect:
			err = pk.DisconnectDecode(body)
		}
		if err != nil {
			r.err.Store(err)
			return
		}
		r.in <- pk
	}
}

// next returns the next packet from the broker or fails after d.
func (r *raw) next(d time.Duration) packets.Packet {
	r.tb.Helper()
	select {
	case pk, ok := <-r.in:
		if !ok {
			r.tb.Fatalf("raw: connection closed: %v", r.err.Load())
		}
		return pk
	case <-time.After(d):
		r.tb.Fatalf("raw: nothing received in %v", d)
	}
	return packets.Packet{}
}

// none asserts that nothing arrives within d.
func (r *raw) none(d time.Duration) {
	r.tb.Helper()
	select {
	case pk, ok := <-r.in:
		if ok {
			r.tb.Fatalf("raw: unexpected %v id %d code %#x", pk.FixedHeader.Type, pk.PacketID, pk.ReasonCode)
		}
	case <-time.After(d):
	}
}

// closed waits until the broker closes the connection, skipping packets
// other than a DISCONNECT, which it returns.
func (r *raw) closed(d time.Duration) (packets.Packet, bool) {
	r.tb.Helper()
	var disc packets.Packet
	var got bool
	t := time.After(d)
	for {
		select {
		case pk, ok := <-r.in:
			if !ok {
				return disc, got
			}
			if pk.FixedHeader.Type == packets.Disconnect {
				disc, got = pk, true
			} else if pk.FixedHeader.Type == packets.Puback || pk.FixedHeader.Type == packets.Pubrec {
				r.tb.Fatalf("raw: ack %v id %d code %#x while expecting the connection to close", pk.FixedHeader.Type, pk.PacketID, pk.ReasonCode)
			}
		case <-t:
			r.tb.Fatalf("raw: connection still open after %v", d)
		}
	}
}

var errNotYet = errors.New("not yet")

func keyFor(tb testing.TB, prefix string, partitions, want int32) string {
	for i := 0; i < 10000; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if route.Partition([]byte(k), partitions) == want {
			return k
		}
	}
	tb.Fatal("no key")
	return ""
}
