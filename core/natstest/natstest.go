package natstest

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/internal/polltest"
)

// Option changes how RunServer configures the server.
type Option func(*config)

type config struct {
	storeDir     string
	syncAlways   bool
	syncInterval time.Duration
	mutate       []func(*server.Options)
}

// WithStoreDir puts the JetStream store in dir instead of t.TempDir(), so a
// second RunServer (or a restarted process) can reopen it.
func WithStoreDir(dir string) Option { return func(c *config) { c.storeDir = dir } }

// WithSyncAlways makes JetStream fsync every write before acknowledging it
// (sync_interval: always), as the centre should run when acknowledged data
// must survive a power cut there.
func WithSyncAlways() Option { return func(c *config) { c.syncAlways = true } }

// WithSyncInterval sets JetStream's background fsync interval (the server's
// default is 2 minutes).
func WithSyncInterval(d time.Duration) Option { return func(c *config) { c.syncInterval = d } }

// WithOptions lets a test change anything else (users and permissions,
// max payload, ...) before each start.
func WithOptions(f func(*server.Options)) Option {
	return func(c *config) { c.mutate = append(c.mutate, f) }
}

// Server is a running (or stopped) embedded server.
type Server struct {
	t    testing.TB
	cfg  config
	port int

	mu  sync.Mutex
	srv *server.Server // nil while stopped
}

// RunServer starts a server and registers its shutdown with t.Cleanup.
func RunServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t}
	for _, o := range opts {
		o(&s.cfg)
	}
	if s.cfg.storeDir == "" {
		s.cfg.storeDir = t.TempDir()
	}
	s.port = -1
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) options() *server.Options {
	o := &server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.cfg.storeDir,
		NoLog:      true,
		NoSigs:     true,
		// Keep JetStream from sizing itself off the machine.
		JetStreamMaxMemory: 64 << 20,
		JetStreamMaxStore:  8 << 30,
	}
	if s.cfg.syncAlways {
		o.SyncAlways = true
	}
	if s.cfg.syncInterval > 0 {
		o.SyncInterval = s.cfg.syncInterval
	}
	for _, f := range s.cfg.mutate {
		f(o)
	}
	return o
}

// Start starts a stopped server on the same port and store directory. It
// fails the test if the server does not come up within 10 s.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.t.Fatalf("natstest: Start: server is running")
	}
	var srv *server.Server
	var err error
	// The port of a server that was just stopped can take a moment to be
	// free again; retry rather than sleep a guessed time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		srv, err = server.NewServer(s.options())
		if err != nil {
			s.t.Fatalf("natstest: new server: %v", err)
		}
		go srv.Start()
		if srv.ReadyForConnections(2 * time.Second) {
			break
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		if time.Now().After(deadline) {
			s.t.Fatalf("natstest: server on port %d (store %s) not ready within 10s", s.port, s.cfg.storeDir)
		}
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		s.t.Fatalf("natstest: JetStream did not start (store %s)", s.cfg.storeDir)
	}
	if s.port == -1 {
		_, p, err := net.SplitHostPort(srv.Addr().String())
		if err != nil {
			s.t.Fatalf("natstest: server address: %v", err)
		}
		s.port, _ = strconv.Atoi(p)
	}
	s.srv = srv
}

// Stop shuts the server down and waits for it; the store stays. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart is Stop then Start.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// URL is the client URL; it stays the same across restarts.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// StoreDir is the JetStream store directory.
func (s *Server) StoreDir() string { return s.cfg.storeDir }

// NATSServer returns the running server, nil while stopped.
func (s *Server) NATSServer() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Connect returns a client connection (closed at cleanup) and its
// JetStream handle. Reconnects are unlimited with a short wait, so outage
// tests see the client come back soon after Start.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	all := append([]nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
	}, opts...)
	nc, err := nats.Connect(s.URL(), all...)
	if err != nil {
		s.t.Fatalf("natstest: connect %s: %v", s.URL(), err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// CreateTopicStream creates the stream for topic exactly as core would
// provision it with tc (use a short tc.DuplicateWindow in outage tests).
func CreateTopicStream(t testing.TB, js jetstream.JetStream, prefix, topic string, tc wire.TopicConfig) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := wire.StreamConfig(prefix, topic, tc)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	st, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		t.Fatalf("natstest: create stream %s: %v", cfg.Name, err)
	}
	return st
}

// WaitFor polls f every 10 ms until it returns nil, failing the test with
// f's last error after timeout.
func WaitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	polltest.Until(t, timeout, f)
}

// EachMsg calls f with every message the named stream holds, in stream
// order, through an ordered consumer; it fails t if the stream cannot be
// read to the end within a minute. Messages added while it reads may or
// may not be included.
func EachMsg(t testing.TB, js jetstream.JetStream, stream string, f func(jetstream.Msg)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", stream, err)
	}
	total := info.State.Msgs
	if total == 0 {
		return
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("natstest: ordered consumer on %s: %v", stream, err)
	}
	// Deleted at once: a test that polls the stream would otherwise pile
	// up consumers until the server's limit, each waiting for its
	// inactivity threshold.
	defer func() {
		if ci := cons.CachedInfo(); ci != nil {
			_ = st.DeleteConsumer(context.Background(), ci.Name)
		}
	}()
	for got := uint64(0); got < total; {
		batch, err := cons.Fetch(int(min(total-got, 2000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("natstest: fetch from %s: %v", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			f(m)
		}
		if err := batch.Error(); err != nil && n == 0 {
			t.Fatalf("natstest: fetch from %s: %v", stream, err)
		}
		got += uint64(n)
	}
}
