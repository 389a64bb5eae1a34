package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outpost-edge/outpost/core/service"
	"github.com/outpost-edge/outpost/core/tail"
	"github.com/outpost-edge/outpost/internal/probe"
)

const usageHead = `core is Outpost's central side: it runs (or joins) NATS JetStream, provisions
one stream per log topic, answers edges' provision requests, collects their
forwarding status and serves an HTTP API.

Usage:
  core [flags]                       run the central service
  core tail [flags] [topic ...]      print records as they arrive
  core tail -h                       flags of tail
  core healthcheck [-http addr]      exit 0 if the local core is ready (container health checks)
  core command send -site S -device D -topic T -payload P [-ttl 10m] [-wait]
                                     send a command to a device (see -h of it)
  core consume -group NAME -topic TOPIC [-from earliest|latest|RFC3339] [-json]
                                     read a topic as a member of a consumer group
  core groups list|describe NAME|reset NAME -topic T -to WHERE|delete NAME
                                     inspect and manage consumer groups

By default core embeds a single-node NATS server with JetStream (client port
127.0.0.1:4222, store ./core-data) and serves HTTP on 127.0.0.1:8081:
  GET /healthz    the process runs
  GET /readyz     NATS connected and configured streams provisioned
  GET /metrics    Prometheus metrics
  GET /v1/sites   every site and node seen, last contact, forwarding lag
  GET /v1/groups[/{name}]  consumer groups: members, buckets, positions, lag
  /subjects, /schemas, /config, /compatibility, /mode
                  a Confluent-compatible schema registry (schema.registry.url
                  is this address), kept in KV bucket OUTPOST-SCHEMAS
  POST/GET /v1/sites/{site}/devices/{device}/commands[/{id}]
                  commands to devices and their status (stream
                  OUTPOST-COMMANDS, KV bucket OUTPOST-COMMAND-STATE)
With -nats URL it uses an existing NATS cluster instead and keeps no state
outside JetStream (the sites view is kept in stream OUTPOST-STATUS, so
/v1/sites lists silent nodes after a restart too).

Flags override the -config file. Flags:
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(runHealthcheck(os.Args[2:], os.Stderr))
	}
	if len(os.Args) > 2 && os.Args[1] == "command" && os.Args[2] == "send" {
		os.Exit(runCommandSend(os.Args[3:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "tail" {
		os.Exit(runTail(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "consume" {
		os.Exit(runConsume(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "groups" {
		os.Exit(runGroups(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(runServe(os.Args[1:], os.Stderr))
}

// natsFlags are the client flags serve and tail share.
type natsFlags struct {
	url, creds, ca, cert, key *string
}

func addNATSFlags(fs *flag.FlagSet, urlHelp string) natsFlags {
	return natsFlags{
		url:   fs.String("nats", "", urlHelp),
		creds: fs.String("nats-creds", "", "NATS credentials `file` (JWT and NKey seed) for -nats"),
		ca:    fs.String("nats-tls-ca", "", "PEM `file` of CAs that sign the NATS server certificate"),
		cert:  fs.String("nats-tls-cert", "", "client certificate PEM `file` for NATS mutual TLS"),
		key:   fs.String("nats-tls-key", "", "client key PEM `file` for NATS mutual TLS"),
	}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func runServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("core", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := service.DefaultConfig()
	configFile := fs.String("config", "", "YAML config `file` (see configs/core.yaml); unknown fields are errors")
	data := fs.String("data", def.NATS.Embedded.DataDir, "embedded NATS: JetStream store `dir`")
	listen := fs.String("nats-listen", def.NATS.Embedded.Listen, "embedded NATS: client listen `addr`")
	syncIv := fs.String("sync-interval", def.NATS.Embedded.SyncInterval, "embedded NATS: `policy`, always or a duration like 2m; see below")
	natsConf := fs.String("nats-config", "", "embedded NATS: nats-server config `file` for auth, TLS, limits (see configs/nats-*.conf)")
	httpAddr := fs.String("http", def.HTTP.Listen, "HTTP API listen `addr` (use :8081 for all interfaces)")
	tokenFile := fs.String("http-token-file", "", "`file` with a bearer token that /metrics and /v1/ require")
	prefix := fs.String("prefix", def.Prefix, "subject `prefix` of all Outpost subjects")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	nf := addNATSFlags(fs, "`URL` of an existing NATS cluster (nats://host:4222, comma-separated seeds); disables the embedded server")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\n-sync-interval (nats.embedded.sync_interval):\n%s\n", service.SyncIntervalHelp)
		fmt.Fprint(fs.Output(), "\nA NATS cluster you run yourself should set jetstream { sync_interval: always }\nwhere acknowledged data must survive a power cut (configs/nats-always.conf).\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "core: unexpected argument %q; did you mean `core tail`? See core -h\n", fs.Arg(0))
		return 2
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "core: %v\n", err)
		return 2
	}

	cfg := service.DefaultConfig()
	if *configFile != "" {
		f, err := os.Open(*configFile)
		if err != nil {
			fmt.Fprintf(stderr, "core: %v\n", err)
			return 2
		}
		cfg, err = service.DecodeConfig(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "core: %s: %v\n", *configFile, err)
			return 2
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "data":
			cfg.NATS.Embedded.DataDir = *data
		case "nats-listen":
			cfg.NATS.Embedded.Listen = *listen
		case "sync-interval":
			cfg.NATS.Embedded.SyncInterval = *syncIv
		case "nats-config":
			cfg.NATS.Embedded.ConfigFile = *natsConf
		case "http":
			cfg.HTTP.Listen = *httpAddr
		case "http-token-file":
			cfg.HTTP.TokenFile = *tokenFile
		case "prefix":
			cfg.Prefix = *prefix
		case "nats":
			cfg.NATS.URL = *nf.url
		case "nats-creds":
			cfg.NATS.Creds = *nf.creds
		case "nats-tls-ca":
			cfg.NATS.TLSCA = *nf.ca
		case "nats-tls-cert":
			cfg.NATS.TLSCert = *nf.cert
		case "nats-tls-key":
			cfg.NATS.TLSKey = *nf.key
		}
	})

	if cfg.NATS.URL != "" {
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "data", "nats-listen", "sync-interval", "nats-config":
				log.Warn("flag ignored: it configures the embedded server, and -nats/nats.url selects an external cluster", "flag", "-"+f.Name)
			}
		})
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := service.New(cfg, log, reg)
	if err != nil {
		fmt.Fprintf(stderr, "core: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := svc.Run(ctx); err != nil {
		log.Error("core failed", "err", err)
		return 1
	}
	return 0
}

func runTail(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("core tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nf := addNATSFlags(fs, "NATS `URL` to read from")
	*nf.url = "nats://127.0.0.1:4222"
	prefix := fs.String("prefix", service.DefaultConfig().Prefix, "subject `prefix` of all Outpost subjects")
	fromStart := fs.Bool("from-start", false, "print what the streams already hold first, then new records")
	duration := fs.Duration("for", 0, "stop after this `duration` (0: until interrupted)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `core tail prints Outpost records as they arrive in JetStream, one line each,
decoded from both the record-per-message and the batch format:

  <site>/<node> <topic>/<partition>@<offset> <time> key=<key> [mqtt=..] [schema=..] [h:k=v].. value=<value>

Keys and values are text when printable UTF-8, quoted when they hold control
characters, b64:<base64> otherwise. Without a topic it follows every Outpost
stream, including ones created later.

Usage:
  core tail [flags] [topic ...]

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	nc, js, err := connectJS(nf, "outpost-core-tail")
	if err != nil {
		fmt.Fprintf(stderr, "core tail: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	err = tail.Run(ctx, js, tail.Options{Prefix: *prefix, Topics: fs.Args(), FromStart: *fromStart, Rescan: 2 * time.Second}, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "core %s\n", strings.TrimPrefix(err.Error(), "tail: "))
		return 1
	}
	return 0
}

// runHealthcheck probes the local core's /readyz (for container images
// without curl).
func runHealthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("core healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "127.0.0.1:8081", "core's HTTP API `address`")
	token := fs.String("token", os.Getenv("OUTPOST_CORE_HTTP_TOKEN"), "API bearer `token` (default $OUTPOST_CORE_HTTP_TOKEN)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := probe.Ready(*addr, *token, 3*time.Second); err != nil {
		fmt.Fprintf(stderr, "core healthcheck: %v\n", err)
		return 1
	}
	return 0
}
