package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outpost-edge/outpost/bridge/auth"
	bmqtt "github.com/outpost-edge/outpost/bridge/mqtt"
	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/bridge/schemacheck"
	"github.com/outpost-edge/outpost/edge/api"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
	"github.com/outpost-edge/outpost/edge/ui"
	"github.com/outpost-edge/outpost/internal/netaddr"
	"github.com/outpost-edge/outpost/internal/ratelimit"
	"github.com/outpost-edge/outpost/sync/downlink"
	"github.com/outpost-edge/outpost/sync/peer"
	"github.com/outpost-edge/outpost/sync/schema"
	"github.com/outpost-edge/outpost/sync/upstream"
)

// Options are the parts of a node that are not configuration: where it
// logs and what tests inject.
type Options struct {
	// Logger receives the node's logs; nil discards.
	Logger *slog.Logger
	// OpenFile, if set, opens the log's files (tests hold back fsync).
	OpenFile log.OpenFileFunc
	// Services run beside the broker for the life of Run (the upstream
	// forwarder, for one): each is started once serving begins, its
	// context ends at shutdown after in-flight publishes were
	// acknowledged, and the log closes only after all have returned. An
	// error from one stops the node.
	Services []func(ctx context.Context, n *Node) error
}

// Node is a running edge node.
type Node struct {
	cfg      Config
	logger   *slog.Logger
	reg      *prometheus.Registry
	log      *log.Log
	meta     *meta.Store
	identity meta.Identity
	server   *mochi.Server
	ingest   *bmqtt.Hook
	gate     *bmqtt.Gate
	mqttLns  []*bmqtt.Listener
	httpLn   net.Listener
	httpSrv  *http.Server

	services  []func(ctx context.Context, n *Node) error
	dash      *ui.Dashboard
	forwarder *upstream.Forwarder // nil without upstream
	// With upstream and replication: this node's own forwarding lease,
	// and a takeover per peer (in the order of cfg.Replication.Peers).
	leaseKeeper *upstream.LeaseKeeper
	takeovers   []*upstream.Takeover
	// Byte budgets of the uplink and the peer links (openBudgets); nil: no
	// shared budget.
	uplinkBudget, peerBudget *ratelimit.Lane
	checker                  *schemacheck.Checker // nil when no route names a schema
	schemaSync               *schema.Syncer       // nil when no route names a schema
	downlink                 *downlink.Store      // nil without upstream or with downlink disabled

	// Replication (nil and empty without it).
	openFile    log.OpenFileFunc
	peerLn      net.Listener
	owner       *peer.Owner
	followers   []*peer.Follower
	replicaLogs []*log.Log // in the order of cfg.Replication.Peers

	mu      sync.Mutex
	running bool // mu
	closed  bool // mu
}

// Open validates cfg, recovers the node's state from DataDir and binds its
// listeners. It starts no goroutines; call Run.
func Open(ctx context.Context, cfg Config, opts Options) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, logger: logger, reg: prometheus.NewRegistry(), services: opts.Services, openFile: opts.OpenFile}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerDiskWrites(n.reg)

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("node: data_dir %s: %w (create it or choose another with -data)", cfg.DataDir, err)
	}
	lc := cfg.logConfig()
	lc.Logger = logger.With("component", "log")
	lc.Registerer = n.reg
	lc.OpenFile = opts.OpenFile
	// Retention never deletes what is not forwarded yet (G5): the forwarder
	// holds every partition from the log's open on, whole until it sets its
	// holds from its cursors (its first scan) and then at what the stream
	// has not acknowledged.
	if cfg.Upstream.URL != "" {
		// The forwarder names its holds after its cursor (openUpstream
		// keeps the default).
		lc.Holders = append(lc.Holders, upstream.DefaultConfig().CursorName)
	}
	// Each peer holds what it has not replicated yet (sync/peer).
	lc.Holders = append(lc.Holders, cfg.Replication.replicaHolders()...)
	if n.log, err = log.Open(filepath.Join(cfg.DataDir, "log"), lc); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.reg.MustRegister(newPartitionCollector(n.log))
	if n.meta, err = meta.Open(filepath.Join(cfg.DataDir, "meta.db"), meta.Config{Logger: logger.With("component", "meta")}); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.identity, err = n.meta.Identity(ctx); err != nil {
		return nil, fmt.Errorf("node: identity: %w", err)
	}
	// Log first, metadata second: cursors never point past a recovered end.
	if c, err := n.meta.ClampCursors(ctx, n.endOffset); err != nil {
		return nil, fmt.Errorf("node: clamp cursors: %w", err)
	} else if c > 0 {
		logger.Warn("node: cursors pointed past the recovered log end and were moved back", "cursors", c)
	}

	router, err := route.New(cfg.Routes)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	for _, t := range append(router.Topics(), deadLetterTopics(router.Topics())...) {
		tc := log.TopicConfig{Partitions: t.Partitions, RetentionBytes: cfg.Log.RetentionBytes, RetentionAge: cfg.Log.RetentionAge}
		if err := n.log.CreateTopic(t.Name, tc); err != nil {
			if errors.Is(err, log.ErrTopicExists) {
				return nil, fmt.Errorf("node: routes: %w (a topic's partition count cannot change; keep it or move the rule to a new topic)", err)
			}
			return nil, fmt.Errorf("node: %w", err)
		}
	}

	// The downlink's topics exist before replication starts, so peers
	// follow them like any topic.
	if n.downlinkOn() {
		if err := n.createDownlinkTopics(); err != nil {
			return nil, err
		}
	}
	if err := n.openSchema(ctx, router); err != nil {
		return nil, err
	}
	// Before the forwarder and the broker: a node that lost its disk
	// restores its partitions from a peer first, and the owner's new epoch
	// starts at the ends the log then has, so every publish of this run
	// belongs to it.
	n.openBudgets()
	if cfg.Replication.Enabled() {
		if err := n.openReplication(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Upstream.URL != "" {
		if err := n.openUpstream(ctx); err != nil {
			return nil, err
		}
		if n.downlinkOn() {
			if err := n.openDownlink(ctx); err != nil {
				return nil, err
			}
		}
	}

	if err := n.openBroker(router); err != nil {
		return nil, err
	}
	if n.httpLn, err = net.Listen("tcp", cfg.HTTP.Address); err != nil {
		return nil, fmt.Errorf("node: http.address: %w (is another node running? choose another with -http)", err)
	}
	routes, err := n.openDashboard()
	if err != nil {
		return nil, err
	}
	handler, err := api.New(api.Config{
		Log: n.log, Meta: n.meta, Gatherer: n.reg, Registerer: n.reg, Token: cfg.HTTP.Token, Replication: n.replicaState,
		Ready: n.ready, Logger: logger.With("component", "api"),
		Routes: routes, OpenPaths: ui.OpenPaths(),
	})
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.httpSrv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	if !netaddr.Loopback(cfg.HTTP.Address) && cfg.HTTP.Token == "" {
		logger.Warn("node: the HTTP API listens beyond loopback without a token; anyone who can reach it can read every record (set http.token)", "address", n.HTTPAddr())
	}
	logger.Info("node: open", "node_id", n.identity.NodeID, "site", n.identity.Site, "data_dir", cfg.DataDir,
		"sync", cfg.Log.Sync, "mqtt", n.MQTTAddrs(), "http", n.HTTPAddr())
	return n, nil
}

func (n *Node) endOffset(topic string, partition int32) (int64, bool) {
	p, err := n.log.Partition(topic, partition)
	if err != nil {
		return 0, false
	}
	return p.EndOffset(), true
}

func (n *Node) openBroker(router *route.Router) error {
	cfg := n.cfg
	l := cfg.MQTT.Limits
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(l.MaxClients)
	caps.MaximumPacketSize = uint32(l.MaxPacketBytes)
	caps.MaximumSessionExpiryInterval = uint32(l.SessionExpiryMax / time.Second)
	caps.ReceiveMaximum = uint16(l.MaxInflight)
	caps.MaximumInflight = uint16(l.MaxInflight)
	caps.MaximumClientWritesPending = int32(l.MaxPendingWrites)
	caps.TopicAliasMaximum = uint16(l.TopicAliasMax)
	n.server = mochi.New(&mochi.Options{
		InlineClient:           true,
		Capabilities:           caps,
		Logger:                 bmqtt.BrokerLogger(n.logger.With("component", "mqtt")),
		SysTopicResendInterval: 10,
	})
	registerBrokerMetrics(n.reg, n.server)

	users := len(cfg.Auth.Users)
	ids := make([]string, 0, len(cfg.listeners()))
	anonymous := map[string]bool{}
	for i, lc := range cfg.listeners() {
		ids = append(ids, fmt.Sprintf("%s%d", lc.Type, i))
		anon := netaddr.Loopback(lc.Address)
		if cfg.Auth.AllowAnonymous != nil {
			anon = *cfg.Auth.AllowAnonymous
		}
		anonymous[ids[i]] = anon
		switch {
		case anon && !netaddr.Loopback(lc.Address):
			n.logger.Warn("node: ANONYMOUS MQTT clients are accepted beyond loopback (auth.allow_anonymous: true): anyone who can reach this address can publish and subscribe", "listener", ids[i], "address", lc.Address)
		case !anon && users == 0 && lc.ClientCAFile == "":
			n.logger.Warn("node: MQTT listener accepts nobody: anonymous clients are refused and no users are configured", "listener", ids[i], "address", lc.Address)
		}
	}
	var forget []func(*mochi.Client)
	sessionCap := bmqtt.NewSessionCap(n.server, l.MaxSessions, nil, n.logger.With("component", "mqtt"), n.reg)
	ah, err := auth.New(auth.Config{
		Admit:          sessionCap.Admit,
		Users:          cfg.Auth.Users,
		AllowAnonymous: func(listener string) bool { return anonymous[listener] },
		Logger:         n.logger.With("component", "auth"),
		Registerer:     n.reg,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := n.server.AddHook(ah, nil); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if n.downlink != nil {
		if err := n.openDeliverer(ah); err != nil {
			return err
		}
	}
	n.ingest, err = bmqtt.New(bmqtt.Config{
		Log: n.log, Router: router, Server: n.server, AckGate: n.ackGate(),
		MaxInflight: l.MaxInflight, MaxPayloadBytes: l.MaxPayloadBytes, AckTimeout: cfg.MQTT.AckTimeout,
		KeepaliveMax: l.KeepaliveMax,
		Check:        n.checkStage(),
		Logger:       n.logger.With("component", "ingest"), Registerer: n.reg,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := n.server.AddHook(n.ingest, nil); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	forget = append(forget, ah.OnClientExpired, n.ingest.OnClientExpired)
	sessionCap.SetForget(forget)

	n.gate = bmqtt.NewGate(bmqtt.Limits{
		MaxConnections:  l.MaxClients,
		ConnectRate:     l.ConnectRate,
		ConnectBurst:    l.ConnectBurst,
		ConnectTimeout:  l.ConnectTimeout,
		MaxConnectBytes: min(64<<10, l.MaxPacketBytes),
	}, n.reg)
	for i, lc := range cfg.listeners() {
		field := fmt.Sprintf("mqtt.listeners[%d]", i)
		var tc *tls.Config
		if lc.Type == "tls" || lc.Type == "wss" {
			if tc, err = serverTLS(lc); err != nil {
				return fmt.Errorf("node: %s: %w", field, err)
			}
		}
		ln, err := bmqtt.NewListener(bmqtt.ListenerConfig{ID: ids[i], Type: lc.Type, Address: lc.Address, TLS: tc, Gate: n.gate, Server: n.server})
		if err != nil {
			return fmt.Errorf("node: %s: %w", field, err)
		}
		if err := n.server.AddListener(ln); err != nil {
			return fmt.Errorf("node: %s: %w (is another broker running? choose another with -mqtt)", field, err)
		}
		n.mqttLns = append(n.mqttLns, ln)
	}
	return nil
}

func serverTLS(lc ListenerConfig) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(lc.CertFile, lc.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("cert_file/key_file: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if lc.ClientCAFile != "" {
		pem, err := os.ReadFile(lc.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file: %s holds no PEM certificate", lc.ClientCAFile)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
		if lc.ClientAuth == "optional" {
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return tc, nil
}

func (n *Node) ready() error {
	n.mu.Lock()
	running, closed := n.running, n.closed
	n.mu.Unlock()
	switch {
	case closed:
		return errors.New("node: closed")
	case !running:
		return errors.New("node: starting")
	}
	return n.log.Health()
}

// MQTTAddrs returns the bound MQTT listener addresses, in config order.
func (n *Node) MQTTAddrs() []string {
	out := make([]string, len(n.mqttLns))
	for i, l := range n.mqttLns {
		out[i] = l.Address()
	}
	return out
}

// HTTPAddr returns the bound HTTP address.
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// Registry returns the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Forwarder returns the upstream forwarder, or nil when forwarding is off.
func (n *Node) Forwarder() *upstream.Forwarder { return n.forwarder }

// Log returns the node's log.
func (n *Node) Log() *log.Log { return n.log }

// Meta returns the node's metadata store.
func (n *Node) Meta() *meta.Store { return n.meta }

// Identity returns the node's identity (NodeID, Site).
func (n *Node) Identity() meta.Identity { return n.identity }

// Logger returns the node's logger.
func (n *Node) Logger() *slog.Logger { return n.logger }

// Run serves MQTT and HTTP until ctx ends, then shuts down gracefully (see
// the package doc) and closes the node. It returns the first serving error.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	if n.closed || n.running {
		n.mu.Unlock()
		return errors.New("node: Run called twice or after Close")
	}
	n.running = true
	n.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2+len(n.services))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("node: http: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		_ = n.ingest.Run(ctx)
	}()
	if err := n.server.Serve(); err != nil {
		errc <- fmt.Errorf("node: mqtt: %w", err)
	}
	svcCtx, svcCancel := context.WithCancel(context.Background())
	defer svcCancel()
	var svcWG sync.WaitGroup
	for i, svc := range n.services {
		svcWG.Add(1)
		go func() {
			defer svcWG.Done()
			if err := svc(svcCtx, n); err != nil && svcCtx.Err() == nil {
				errc <- fmt.Errorf("node: service %d: %w", i, err)
			}
		}()
	}
	n.logger.Info("node: serving", "mqtt", n.MQTTAddrs(), "http", n.HTTPAddr())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		n.logger.Error("node: stopping after an error", "err", runErr)
	}
	n.shutdown()
	// Services (the forwarder) outlive the broker's drain, so that what
	// was just acknowledged may still be forwarded; they end before the
	// log closes.
	svcCancel()
	svcWG.Wait()
	cancel()
	wg.Wait()
	if err := n.Close(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// shutdown stops taking work and acknowledges what was received.
func (n *Node) shutdown() {
	n.logger.Info("node: shutting down: no new connections; acknowledging publishes in flight")
	for _, l := range n.mqttLns {
		l.StopAccepting()
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	if err := n.ingest.Drain(ctx); err != nil {
		n.logger.Warn("node: shutdown timeout: some publishes were not acknowledged; their clients will resend", "err", err)
	}
	n.server.Close()
	hctx, hcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer hcancel()
	_ = n.httpSrv.Shutdown(hctx)
}

// Close releases everything; it is idempotent. After Run it only finishes
// what Run's shutdown did.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	running := n.running
	n.mu.Unlock()
	if !running {
		for _, l := range n.mqttLns {
			l.StopAccepting()
		}
		if n.httpLn != nil {
			n.httpLn.Close()
		}
	}
	if n.server != nil {
		waitGroup(&n.server.Listeners.ClientsWg, 5*time.Second)
	}
	if n.ingest != nil {
		// Its ack drainers and refusals end before the log closes.
		_ = n.ingest.Close()
	}
	var errs []error
	if err := n.closeReplication(); err != nil {
		errs = append(errs, err)
	}
	if n.log != nil {
		if err := n.log.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: close log: %w", err))
		}
	}
	if n.meta != nil {
		if err := n.meta.Close(); err != nil {
			errs = append(errs, fmt.Errorf("node: close meta: %w", err))
		}
	}
	n.logger.Info("node: closed")
	return errors.Join(errs...)
}

func waitGroup(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
