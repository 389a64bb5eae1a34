package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/outpost-edge/outpost/edge/node"
	"github.com/outpost-edge/outpost/internal/buildinfo"
	"github.com/outpost-edge/outpost/internal/probe"
)

const usage = `Usage: edge [flags]
       edge healthcheck [-http ADDR] [-token TOKEN]
       edge check [-config FILE] [-data DIR]
       edge repair [-config FILE] [-data DIR] -yes

Runs an Outpost edge node: devices publish MQTT (3.1.1 and 5, over TCP,
TLS and WebSocket) to the embedded broker; every publish becomes a record
in the local log under DATA/log, and a QoS 1/2 acknowledgement means the
record is on disk. The HTTP API serves /healthz, /readyz, /metrics,
/v1/topics and /v1/topics/{topic}/partitions/{p}/records?offset=N&limit=M.

With no config the node listens on 127.0.0.1 only (MQTT :1883, HTTP :8080)
and accepts anonymous clients there. To listen on other addresses configure
auth.users (bcrypt hashes), client certificates, or auth.allow_anonymous:
true in a config file.

Settings, later ones winning:
  1. defaults (see configs/edge.yaml, which lists them all)
  2. the YAML file given with -config (unknown fields are errors)
  3. environment variables OUTPOST_<PATH>, e.g. OUTPOST_LOG_SYNC=interval,
     OUTPOST_MQTT_LIMITS_MAX_CLIENTS=200, OUTPOST_HTTP_TOKEN=secret
  4. the flags below

Site replication: with -peers (or replication.peers) every node serves its
own partitions on -replication ADDR and keeps a replica of each peer's under
DATA/replicas/<peer>; all nodes share replication.secret (or
OUTPOST_REPLICATION_SECRET) and each has its own -node name. Acks are local:
replicas follow asynchronously (replication.acks: all is not available yet).

SIGTERM or SIGINT shut down cleanly: stop accepting, acknowledge what is
durable, close the log.

"edge healthcheck" asks a running node's /readyz (for container health
checks) and exits 0 when it is ready, 1 otherwise.

"edge check" verifies a stopped node's data: every frame of every log
segment, and the metadata store; exit 0 when sound, 1 when damaged.
"edge repair -yes" cuts each damaged partition at its first damage, keeping
the cut bytes as .broken files; records after the damage are lost. The node
refuses to start on damage followed by valid data (a torn tail from a crash
is cut at every start without asking), and names these commands.

Flags:
`

func main() {
	os.Exit(run())
}

func run() int {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "healthcheck":
			return healthcheck(os.Args[2:])
		case "check", "repair":
			return checkData(os.Args[1], os.Args[2:])
		}
	}
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "YAML config `file` (default: none, built-in defaults)")
	dataDir := fs.String("data", "", "data `dir`ectory for the log and metadata (overrides data_dir; default ./data)")
	mqttAddr := fs.String("mqtt", "", "MQTT TCP listen `address` (overrides mqtt.address and mqtt.listeners; default 127.0.0.1:1883)")
	httpAddr := fs.String("http", "", "HTTP API listen `address` (overrides http.address; default 127.0.0.1:8080)")
	upstreamURL := fs.String("upstream", "", "central NATS `URL` to forward to, e.g. nats://core:4222 (overrides upstream.url; default: no forwarding)")
	site := fs.String("site", "", "site `name` upstream (overrides upstream.site; default \"default\")")
	nodeName := fs.String("node", "", "node `name` within the site upstream (overrides upstream.node; default: the node's generated id)")
	replAddr := fs.String("replication", "", "peer replication listen `address`, e.g. 0.0.0.0:7400 (overrides replication.listen)")
	peers := fs.String("peers", "", "the site's other nodes, `NAME=HOST:PORT[,NAME=HOST:PORT…]` (overrides replication.peers; turns replication on)")
	check := fs.Bool("check-config", false, "validate the configuration, print the effective settings and exit")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *version {
		fmt.Println("edge " + buildinfo.Get().String())
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "edge: unexpected argument %q; see edge -h\n", fs.Arg(0))
		return 2
	}

	cfg, err := node.Load(*configPath, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "edge: %v\n", err)
		return 2
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if *mqttAddr != "" {
		cfg.MQTT.Address = *mqttAddr
		cfg.MQTT.Listeners = nil
	}
	if *httpAddr != "" {
		cfg.HTTP.Address = *httpAddr
	}
	if *upstreamURL != "" {
		cfg.Upstream.URL = *upstreamURL
	}
	if *site != "" {
		cfg.Upstream.Site = *site
	}
	if *nodeName != "" {
		cfg.Upstream.Node = *nodeName
	}
	if *replAddr != "" {
		cfg.Replication.Listen = *replAddr
	}
	if *peers != "" {
		if cfg.Replication.Peers, err = node.ParsePeers(*peers); err != nil {
			fmt.Fprintf(os.Stderr, "edge: %v\n", err)
			return 2
		}
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "edge: %v\n", err)
		return 2
	}
	if *check {
		fmt.Printf("config ok: data_dir=%s mqtt=%v http=%s sync=%s\n", cfg.DataDir, cfg.MQTT.Address, cfg.HTTP.Address, cfg.Log.Sync)
		return 0
	}

	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	n, err := node.Open(ctx, cfg, node.Options{Logger: logger})
	if err != nil {
		logger.Error("edge: cannot start", "err", err)
		return 1
	}
	logger.Info("edge: starting", "version", buildinfo.Get().String())
	if err := n.Run(ctx); err != nil {
		logger.Error("edge: stopped with an error", "err", err)
		return 1
	}
	return 0
}

// healthcheck asks a running node whether it is ready.
func healthcheck(args []string) int {
	fs := flag.NewFlagSet("edge healthcheck", flag.ContinueOnError)
	addr := fs.String("http", "127.0.0.1:8080", "the node's HTTP API `address`")
	token := fs.String("token", os.Getenv(node.EnvPrefix+"HTTP_TOKEN"), "API bearer `token` (default $OUTPOST_HTTP_TOKEN)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := probe.Ready(*addr, *token, 3*time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "edge healthcheck: %v\n", err)
		return 1
	}
	return 0
}

// checkData runs "edge check" and "edge repair" on a stopped node's data.
func checkData(cmd string, args []string) int {
	fs := flag.NewFlagSet("edge "+cmd, flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML config `file` (for data_dir and the log settings)")
	dataDir := fs.String("data", "", "data `dir`ectory (overrides data_dir; default ./data)")
	yes := fs.Bool("yes", false, "repair: really cut damaged partitions (records after the damage are lost)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := node.Load(*configPath, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "edge %s: %v\n", cmd, err)
		return 2
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cmd == "check" {
		sound, err := node.CheckData(ctx, cfg, os.Stdout, logger)
		if err != nil {
			fmt.Fprintf(os.Stderr, "edge check: %v\n", err)
			return 2
		}
		if !sound {
			return 1
		}
		return 0
	}
	if !*yes {
		fmt.Fprintf(os.Stderr, "edge repair: cuts each damaged log partition at its first damage; the records after it are lost\n"+
			"(the cut bytes are kept as .broken files). Run `edge check -data %s` first to see what is damaged,\n"+
			"then `edge repair -data %s -yes` with the node stopped.\n", cfg.DataDir, cfg.DataDir)
		return 2
	}
	if err := node.RepairData(ctx, cfg, os.Stdout, logger); err != nil {
		fmt.Fprintf(os.Stderr, "edge repair: %v\n", err)
		return 1
	}
	return 0
}
