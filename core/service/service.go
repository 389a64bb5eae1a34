package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outpost-edge/outpost/core/command"
	"github.com/outpost-edge/outpost/core/groups"
	"github.com/outpost-edge/outpost/core/provision"
	"github.com/outpost-edge/outpost/core/schema"
	"github.com/outpost-edge/outpost/core/sites"
	"github.com/outpost-edge/outpost/core/ui"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/internal/httpauth"
	"github.com/outpost-edge/outpost/internal/netaddr"
)

// Service is a running core: NATS (embedded or not), stream provisioning,
// the sites view and the HTTP API.
type Service struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry

	ready     atomic.Bool
	notReady  atomic.Pointer[string] // why /readyz says no
	persisted atomic.Bool            // the sites view is restored from and kept in the status stream
	started   chan struct{}          // closed once listeners are bound
	httpAddr  net.Addr               // set before started is closed
	natsURL   string                 // set before started is closed
	closeOnce sync.Once

	// statusTimeout bounds ensuring the status stream: a request NATS
	// permissions deny gets no answer, so this is how long a core without
	// the permission waits before it falls back to the in-memory view.
	statusTimeout time.Duration
	// statusRetry is the first wait before trying the status stream again.
	statusRetry time.Duration
}

// New validates cfg. log may be nil (discard); reg may be nil (no metrics,
// /metrics answers 404). It starts nothing.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("service: config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Service{cfg: cfg, log: log, reg: reg, started: make(chan struct{}),
		statusTimeout: provision.RequestTimeout, statusRetry: 5 * time.Second}
	s.setNotReady("starting")
	return s, nil
}

func (s *Service) setNotReady(why string) {
	s.notReady.Store(&why)
	s.ready.Store(false)
}

// Started is closed once the HTTP listener and NATS are up (HTTPAddr and
// NATSURL are then valid); Run may still be provisioning.
func (s *Service) Started() <-chan struct{} { return s.started }

// HTTPAddr is the bound HTTP address (after Started).
func (s *Service) HTTPAddr() net.Addr { return s.httpAddr }

// NATSURL is the URL edges and tools connect to (after Started).
func (s *Service) NATSURL() string { return s.natsURL }

// Run runs core until ctx is done, then shuts down in order (HTTP, NATS
// subscriptions, embedded server). It returns an error if something could
// not start; a NATS cluster that is down only makes /readyz say so while
// the client reconnects.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var reg prometheus.Registerer
	if s.reg != nil {
		reg = s.reg
	}

	// Read before anything starts, so a bad token file stops nothing.
	token, err := s.readToken()
	if err != nil {
		return err
	}

	var ns *server.Server
	connOpts := []nats.Option{
		nats.Name("outpost-core"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if !nc.IsClosed() {
				s.log.Warn("disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			s.log.Warn("NATS async error", "subject", subj, "err", err)
		}),
	}
	natsURL := s.cfg.NATS.URL
	if s.cfg.Embedded() {
		var err error
		ns, err = s.startEmbedded()
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
			s.log.Info("embedded NATS stopped")
		}()
		natsURL = ns.ClientURL()
		connOpts = append(connOpts, nats.InProcessServer(ns))
	}
	connOpts = append(connOpts, s.clientAuthOptions()...)
	s.natsURL = natsURL

	nc, err := nats.Connect(natsURL, connOpts...)
	if err != nil {
		return fmt.Errorf("service: connect %s: %w", netaddr.RedactURL(natsURL), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("service: jetstream: %w", err)
	}

	if reg != nil {
		boolGauge := func(name, help string, f func() bool) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
				if f() {
					return 1
				}
				return 0
			})
		}
		for _, c := range []prometheus.Collector{
			boolGauge("outpost_core_nats_connected", "1 while core is connected to NATS.", nc.IsConnected),
			boolGauge("outpost_core_ready", "1 while /readyz says ready.", func() bool { return nc.IsConnected() && s.ready.Load() }),
			boolGauge("outpost_core_sites_persisted", "1 once the sites view is restored from and kept in the status stream; 0 while it is in memory only (see the log).", s.persisted.Load),
			groups.NewCollector(js, s.cfg.Prefix),
		} {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("service: register metrics: %w", err)
			}
			defer reg.Unregister(c)
		}
	}

	prov, err := provision.New(js, s.cfg.Streams, s.log.With("component", "provision"), reg)
	if err != nil {
		return err
	}
	view, err := sites.New(s.cfg.Sites, s.log.With("component", "sites"), reg)
	if err != nil {
		return err
	}
	registry, err := schema.New(js, s.cfg.SchemaRegistryConfig(), s.log.With("component", "schema"), reg)
	if err != nil {
		return err
	}
	commands, err := command.New(js, s.cfg.Prefix, s.cfg.Commands, view, s.log.With("component", "command"), reg)
	if err != nil {
		return err
	}
	// Subscriptions are made while disconnected too (RetryOnFailedConnect)
	// and resent by the client on every reconnect.
	statusSub, err := nc.Subscribe(wire.StatusSubscription(s.cfg.Prefix), view.HandleStatus)
	if err != nil {
		return fmt.Errorf("service: subscribe status: %w", err)
	}
	defer statusSub.Unsubscribe()
	provSub, err := nc.QueueSubscribe(wire.ProvisionSubscription(s.cfg.Prefix), "outpost-core", prov.Handle)
	if err != nil {
		return fmt.Errorf("service: subscribe provision: %w", err)
	}
	defer provSub.Unsubscribe()
	for subj, h := range map[string]nats.MsgHandler{
		wire.CommandSendSubject(s.cfg.Prefix): commands.HandleSend,
		wire.CommandGetSubject(s.cfg.Prefix):  commands.HandleGet,
	} {
		sub, err := nc.QueueSubscribe(subj, "outpost-core", h)
		if err != nil {
			return fmt.Errorf("service: subscribe %s: %w", subj, err)
		}
		defer sub.Unsubscribe()
	}

	ln, err := net.Listen("tcp", s.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("service: http listen %s: %w (another core running? pick another -http address)", s.cfg.HTTP.Listen, err)
	}
	s.httpAddr = ln.Addr()
	dash := ui.New(ui.Config{
		Sites: view.Sites, Subjects: registry.Subjects, Commands: commands.Recent, Logger: s.log.With("component", "ui"),
		Ready: func() error { return s.readiness(nc, registry, commands) },
	})
	hs := &http.Server{
		Handler:           s.handler(nc, js, view, registry, commands, dash, token),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	httpErr := make(chan error, 1)
	go func() { httpErr <- hs.Serve(ln) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = hs.Shutdown(sctx)
	}()
	s.closeOnce.Do(func() { close(s.started) })
	s.log.Info("core started", "nats", netaddr.RedactURL(natsURL), "embedded", s.cfg.Embedded(), "http", s.httpAddr.String(), "prefix", s.cfg.Prefix)

	provDone := make(chan struct{})
	go func() {
		defer close(provDone)
		s.provisionLoop(ctx, prov, view)
	}()
	regDone := make(chan error, 1)
	go func() { regDone <- registry.Run(ctx) }()
	cmdDone := make(chan struct{})
	go func() {
		defer close(cmdDone)
		s.commandLoop(ctx, prov, commands)
	}()
	dashDone := make(chan struct{})
	go func() {
		defer close(dashDone)
		_ = dash.Run(ctx)
	}()
	defer func() {
		cancel()
		<-dashDone
		<-cmdDone
		<-provDone
		if err := <-regDone; err != nil {
			s.log.Error("schema registry stopped", "err", err)
		}
	}()

	select {
	case <-ctx.Done():
		s.log.Info("core stopping")
		return nil
	case err := <-httpErr:
		return fmt.Errorf("service: http: %w", err)
	}
}

// provisionLoop ensures configured streams, retrying with backoff while
// NATS is away, then restores the sites view from the status stream, and
// then marks the service ready. A status stream core cannot have does not
// keep core from being ready: the view is then in memory only, and the
// loop keeps trying in the background.
func (s *Service) provisionLoop(ctx context.Context, prov *provision.Provisioner, view *sites.Registry) {
	backoff := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := prov.EnsureConfigured(actx)
		cancel()
		if err == nil {
			break
		}
		s.setNotReady("provisioning streams: " + err.Error())
		s.log.Warn("cannot provision configured streams yet; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	s.log.Info("configured streams provisioned", "topics", len(s.cfg.Streams.Topics), "auto_provision", s.cfg.Streams.AutoProvision)

	s.setNotReady("restoring the sites view from stream " + wire.StatusStreamName(s.cfg.Prefix))
	err := s.restoreSites(ctx, prov, view)
	if ctx.Err() != nil {
		return
	}
	s.ready.Store(true)
	if err == nil {
		return
	}
	name := wire.StatusStreamName(s.cfg.Prefix)
	s.log.Warn("sites view is IN MEMORY ONLY: after a core restart, /v1/sites lacks every node until it reports again (sites whose uplink is down stay missing). "+
		"Let core create and read stream "+name+" (publish to $JS.API.STREAM.CREATE."+name+", $JS.API.STREAM.INFO."+name+", $JS.API.CONSUMER.CREATE."+name+".>), "+
		"or create it yourself with subjects "+wire.StatusStreamSubjects(s.cfg.Prefix)+" and max_msgs_per_subject 1; core retries in the background",
		"stream", name, "err", err)
	backoff = s.statusRetry
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if err = s.restoreSites(ctx, prov, view); err == nil {
			return
		}
		s.log.Debug("status stream still unavailable", "stream", name, "err", err, "retry_in", backoff)
		backoff = min(backoff*2, 5*time.Minute)
	}
}

// restoreSites ensures the status stream and loads the view from it. The
// live subscription is already running: the view keeps the newer of a
// restored and a live report, so their order does not matter.
func (s *Service) restoreSites(ctx context.Context, prov *provision.Provisioner, view *sites.Registry) error {
	ectx, cancel := context.WithTimeout(ctx, s.statusTimeout)
	st, res, err := prov.EnsureStatusStream(ectx, s.cfg.StatusStream())
	cancel()
	if st == nil {
		return err
	}
	if err != nil {
		// It exists and holds the reports, only its limits are not ours.
		s.log.Warn("status stream keeps its old shape", "err", err)
	}
	start := time.Now()
	ctx, cancel = context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := view.Restore(ctx, st)
	if err != nil {
		return err
	}
	s.persisted.Store(true)
	s.log.Info("sites view restored from the status stream", "stream", st.CachedInfo().Config.Name, "stream_result", res,
		"nodes", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (s *Service) startEmbedded() (*server.Server, error) {
	e := s.cfg.NATS.Embedded
	opts := &server.Options{}
	if e.ConfigFile != "" {
		var err error
		opts, err = server.ProcessConfigFile(e.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("service: nats.embedded.config_file %s: %w", e.ConfigFile, err)
		}
	}
	host, portStr, _ := net.SplitHostPort(e.Listen)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("service: nats.embedded.listen %q: bad port", e.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	always, interval, _ := ParseSyncInterval(e.SyncInterval)
	opts.Host, opts.Port = host, port
	opts.JetStream = true
	opts.StoreDir = e.DataDir
	opts.SyncAlways, opts.SyncInterval = always, interval
	opts.NoSigs = true
	if opts.ServerName == "" {
		opts.ServerName = "outpost-core"
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("service: embedded NATS: %w", err)
	}
	fatal := make(chan string, 1)
	ns.SetLoggerV2(natsLogger{log: s.log.With("component", "nats"), fatal: fatal}, false, false, false)
	go ns.Start()
	deadline := time.Now().Add(30 * time.Second)
	for !ns.ReadyForConnections(100 * time.Millisecond) {
		select {
		case msg := <-fatal:
			ns.Shutdown()
			return nil, fmt.Errorf("service: embedded NATS on %s: %s (port taken by another core or nats-server? pick another -nats-listen)", e.Listen, msg)
		default:
		}
		if time.Now().After(deadline) {
			ns.Shutdown()
			return nil, fmt.Errorf("service: embedded NATS did not start on %s within 30s (store %s locked by another core?); see the log above", e.Listen, e.DataDir)
		}
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		return nil, fmt.Errorf("service: embedded NATS started without JetStream (store %s); see the log above", e.DataDir)
	}
	if len(opts.Users) == 0 && len(opts.Nkeys) == 0 && opts.Authorization == "" && opts.Username == "" && len(opts.TrustedOperators) == 0 {
		s.log.Warn("embedded NATS has NO AUTHENTICATION: anyone who can reach the listener can publish and read every stream; set nats.embedded.config_file for users and TLS",
			"listen", ns.ClientURL())
	}
	s.log.Info("embedded NATS started", "listen", ns.ClientURL(), "store", e.DataDir, "sync_interval", e.SyncInterval)
	return ns, nil
}

func (s *Service) clientAuthOptions() []nats.Option {
	n := s.cfg.NATS
	var opts []nats.Option
	if n.Creds != "" {
		opts = append(opts, nats.UserCredentials(n.Creds))
	}
	if n.User != "" {
		opts = append(opts, nats.UserInfo(n.User, n.Password))
	}
	if n.TLSCA != "" {
		opts = append(opts, nats.RootCAs(n.TLSCA))
	}
	if n.TLSCert != "" {
		opts = append(opts, nats.ClientCert(n.TLSCert, n.TLSKey))
	}
	return opts
}

// readToken loads the HTTP bearer token, and warns when the API is
// reachable from other hosts without one (G8: unsafe setups say so loudly).
func (s *Service) readToken() (string, error) {
	if s.cfg.HTTP.TokenFile == "" {
		if host, _, _ := net.SplitHostPort(s.cfg.HTTP.Listen); !netaddr.LoopbackHost(host) {
			s.log.Warn("HTTP API has NO TOKEN and listens beyond loopback: anyone who can reach it reads sites and metrics; set http.token_file",
				"listen", s.cfg.HTTP.Listen)
		}
		return "", nil
	}
	b, err := os.ReadFile(s.cfg.HTTP.TokenFile)
	if err != nil {
		return "", fmt.Errorf("service: http.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("service: http.token_file %s: token shorter than 16 characters; generate one with `openssl rand -hex 32`", s.cfg.HTTP.TokenFile)
	}
	return tok, nil
}

// commandLoop ensures the downlink's stream, bucket and the stream of the
// status records edges forward, retrying while NATS is away, then folds
// status records until ctx ends.
func (s *Service) commandLoop(ctx context.Context, prov *provision.Provisioner, q *command.Queue) {
	backoff := 250 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := q.Ensure(actx)
		// The streams of the downlink's edge topics: status records core
		// folds, and the record of what edges took.
		for _, topic := range []string{wire.CommandStatusTopic, wire.CommandLogTopic} {
			if err == nil {
				_, _, err = prov.Ensure(actx, topic)
			}
		}
		cancel()
		if err == nil {
			break
		}
		s.log.Warn("cannot set up the command queue yet; retrying (with streams.auto_provision off, list topics _command-status and _commands under streams.topics)", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	_ = q.RunFold(ctx)
}

// readiness is nil when core is ready, else why not (/readyz, the
// dashboard).
func (s *Service) readiness(nc *nats.Conn, registry *schema.Registry, commands *command.Queue) error {
	switch {
	case !nc.IsConnected():
		return errors.New("NATS " + nc.Status().String())
	case !s.ready.Load():
		return errors.New(*s.notReady.Load())
	case !commands.Ready():
		return errors.New("setting up the command queue (stream " + wire.CommandStreamName(s.cfg.Prefix) + ", bucket " + wire.CommandStateBucket(s.cfg.Prefix) + ")")
	case !registry.Ready():
		return errors.New("loading the schema registry from KV bucket " + registry.Bucket())
	}
	return nil
}

func (s *Service) handler(nc *nats.Conn, js jetstream.JetStream, view *sites.Registry, registry *schema.Registry, commands *command.Queue, dash *ui.Dashboard, token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.readiness(nc, registry, commands); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	for pattern, h := range dash.Routes() {
		mux.Handle(pattern, h)
	}
	if s.reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}))
	}
	mux.Handle("/v1/sites", view)
	commands.Register(mux)
	groups.NewAPI(js, s.cfg.Prefix).Register(mux)
	// The schema registry at the root paths of the Confluent API, so this
	// listener's address is itself a schema.registry.url.
	api := registry.Handler()
	for _, p := range schema.MountPaths {
		mux.Handle(p, api)
	}
	// Everything but the probes needs the token, unknown paths included
	// (fail closed), as on the edge.
	open := append([]string{"/healthz", "/readyz"}, ui.OpenPaths()...)
	return httpauth.New(token, "outpost-core", "the token in core's http.token_file", open...).Wrap(mux, nil)
}
