package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/fleet"
	"github.com/outpost-edge/outpost/firmware-sim/payload"
	"github.com/outpost-edge/outpost/firmware-sim/scenario"
)

const fleetUsage = `Usage: firmware-sim [flags]
       firmware-sim verify [flags]   (see firmware-sim verify -h)

Plays N devices, each with its own MQTT connection, publishing sensor
readings (JSON, msgpack or raw) with per-device sequence numbers.

Quick runs:
  firmware-sim -broker tcp://127.0.0.1:1883 -devices 10 -rate 1 -duration 1m
  firmware-sim -devices 100 -qos 1 -inflight 100 -rate 0 -duration 10s -size 100 -format raw -json
Scenario files (examples in configs/fleet-*.yaml); flags given explicitly
override every group of the scenario:
  firmware-sim -scenario configs/fleet-farm.yaml -broker tcp://10.0.0.5:1883

Exit status: 0 ok, 1 error, 2 usage, 3 acknowledgements missing at the end.

Flags:
`

type fleetFlags struct {
	broker, scenario, site, topic, clientID, deviceID, format string
	username, password, mqttVersion, commands                 string
	devices, qos, inflight, size                              int
	count                                                     int64
	rate, jitter, malformed, schemaViolations                 float64
	duration, drain, rampUp, keepAlive, progress              time.Duration
	seed                                                      uint64
	jsonOut, clean, verbose                                   bool
	tls                                                       tlsFlags
}

type tlsFlags struct {
	ca, cert, key string
	insecure      bool
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.ca, "tls-ca", "", "PEM file with CA certificates to trust for ssl:// and wss:// brokers (default: system roots)")
	fs.StringVar(&t.cert, "tls-cert", "", "PEM client certificate, for brokers that authenticate devices by certificate")
	fs.StringVar(&t.key, "tls-key", "", "PEM private key of -tls-cert")
	fs.BoolVar(&t.insecure, "tls-insecure", false, "do not verify the broker's certificate (testing only)")
}

func (t *tlsFlags) config() (*tls.Config, error) {
	if t.ca == "" && t.cert == "" && !t.insecure {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.insecure} //nolint:gosec // opt-in flag
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, fmt.Errorf("-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-ca: %s holds no PEM certificate", t.ca)
		}
		tc.RootCAs = pool
	}
	if t.cert != "" {
		cert, err := tls.LoadX509KeyPair(t.cert, t.key)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := fleet.DefaultGroup()
	var f fleetFlags
	fs := flag.NewFlagSet("firmware-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, fleetUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.broker, "broker", "tcp://127.0.0.1:1883", "broker URL: tcp://HOST:PORT, ssl://HOST:PORT, ws://HOST:PORT/PATH or wss://; several separated by commas fail over (a site's nodes)")
	fs.StringVar(&f.scenario, "scenario", "", "scenario YAML file (see configs/fleet-*.yaml)")
	fs.StringVar(&f.site, "site", "site1", "site name, fills {site} in templates")
	fs.IntVar(&f.devices, "devices", g.Devices, "number of devices (one MQTT connection each)")
	fs.IntVar(&f.qos, "qos", g.QoS, "QoS 0, 1 or 2")
	fs.IntVar(&f.inflight, "inflight", g.InFlight, "in-flight window per connection for QoS 1/2 (pipelining)")
	fs.Int64Var(&f.count, "count", 0, "readings per device (0: until -duration)")
	fs.Float64Var(&f.rate, "rate", g.Rate, "readings per device per second (0: as fast as the window allows)")
	fs.Float64Var(&f.jitter, "jitter", 0, "vary each interval by up to this fraction (0..1)")
	fs.DurationVar(&f.duration, "duration", 0, "stop sampling after this long (default 10s when -count is not set)")
	fs.DurationVar(&f.drain, "drain-timeout", 10*time.Second, "after sampling stops, wait this long for outstanding acks")
	fs.DurationVar(&f.rampUp, "ramp-up", 0, "spread device starts over this period")
	fs.IntVar(&f.size, "size", 0, "pad payloads to this many bytes (0: natural size, ~150 B JSON)")
	fs.StringVar(&f.format, "format", "json", "payload format: json, msgpack or raw")
	fs.StringVar(&f.mqttVersion, "mqtt-version", g.MQTTVersion, "MQTT version: 3 (3.1.1), 5, or mixed")
	fs.StringVar(&f.username, "username", "", "MQTT username (templates allowed, e.g. {device})")
	fs.StringVar(&f.password, "password", "", "MQTT password")
	fs.StringVar(&f.topic, "topic", g.Topic, "topic template; {site}, {group}, {device}, {n} are expanded")
	fs.StringVar(&f.clientID, "client-id", g.ClientID, "client id template")
	fs.StringVar(&f.commands, "commands", "", "subscribe every device to this command topic filter template (e.g. 'cmd/{client}/#') and answer MQTT 5 commands on their response topic")
	fs.StringVar(&f.deviceID, "device-id", g.DeviceID, "device id template")
	fs.Float64Var(&f.malformed, "malformed", 0, "share of extra malformed payloads per reading (0..1)")
	fs.Float64Var(&f.schemaViolations, "schema-violations", 0, "share of extra schema-violating payloads per reading (0..1)")
	fs.BoolVar(&f.clean, "clean", false, "clean start on every connect (default: persistent sessions, resend after reconnect)")
	fs.DurationVar(&f.keepAlive, "keepalive", g.KeepAlive, "MQTT keep alive")
	fs.Uint64Var(&f.seed, "seed", 0, "random seed, to repeat a run (0: random, printed)")
	fs.BoolVar(&f.jsonOut, "json", false, "print the final summary as JSON")
	fs.DurationVar(&f.progress, "progress", 10*time.Second, "progress line interval when stderr is not a terminal (0: none)")
	fs.BoolVar(&f.verbose, "v", false, "log connection events to stderr")
	printSchema := fs.Bool("print-schema", false, "print the registry request that registers the JSON payloads' schema (POST it to <registry>/subjects/<subject>/versions) and exit")
	f.tls.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *printSchema {
		b, _ := json.Marshal(struct {
			SchemaType string `json:"schemaType"`
			Schema     string `json:"schema"`
		}{"JSON", payload.JSONSchema})
		fmt.Fprintf(stdout, "%s\n", b)
		return exitOK
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "unexpected argument %q (subcommands: verify)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	var cfg fleet.Config
	if f.scenario != "" {
		var err error
		if cfg, err = scenario.Load(f.scenario); err != nil {
			return usageError(stderr, "%v", err)
		}
	} else {
		cfg = fleet.DefaultConfig()
		cfg.Groups = []fleet.Group{g}
		set["devices"], set["qos"], set["inflight"], set["rate"], set["mqtt-version"] = true, true, true, true, true
		set["topic"], set["client-id"], set["device-id"], set["keepalive"], set["broker"], set["site"] = true, true, true, true, true, true
		set["drain-timeout"] = true
		if f.count == 0 && f.duration == 0 {
			f.duration, set["duration"] = 10*time.Second, true
		}
	}
	applyFlags(&cfg, &f, set)
	if err := cfg.Validate(); err != nil {
		return usageError(stderr, "%v", err)
	}
	tc, err := f.tls.config()
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fl, err := fleet.New(cfg, tc, log)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	if !f.jsonOut {
		fmt.Fprintf(stderr, "firmware-sim: %d devices -> %s (seed %d)\n", len(fl.Devices()), cfg.Broker, fl.Seed())
	}
	stopProgress := startProgress(ctx, fl, stderr, f.progress)
	sum, runErr := fl.Run(ctx)
	stopProgress()
	if f.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			fleet.Summary
			Seed uint64 `json:"seed"`
		}{sum, fl.Seed()})
	} else {
		_ = sum.WriteText(stdout)
	}
	switch {
	case runErr != nil && !errors.Is(runErr, context.Canceled):
		fmt.Fprintf(stderr, "firmware-sim: %v\n", runErr)
		return exitError
	case sum.Connects == 0:
		fmt.Fprintf(stderr, "firmware-sim: no device could connect to %s; is the broker running and the URL right? (errors: %v)\n", cfg.Broker, sum.Errors)
		return exitError
	case sum.Missing > 0 || sum.Unsent > 0:
		fmt.Fprintf(stderr, "firmware-sim: %d acknowledgements missing, %d readings unsent at the end; the broker did not confirm everything (check -drain-timeout and the broker)\n", sum.Missing, sum.Unsent)
		return exitMissing
	case runErr != nil:
		return exitError
	}
	return exitOK
}

// applyFlags copies explicitly set flags onto every group.
func applyFlags(cfg *fleet.Config, f *fleetFlags, set map[string]bool) {
	if set["broker"] {
		cfg.Broker = f.broker
	}
	if set["site"] {
		cfg.Site = f.site
	}
	if set["duration"] {
		cfg.Duration = f.duration
	}
	if set["drain-timeout"] {
		cfg.DrainTimeout = f.drain
	}
	if set["ramp-up"] {
		cfg.RampUp = f.rampUp
	}
	if set["seed"] {
		cfg.Seed = f.seed
	}
	for i := range cfg.Groups {
		g := &cfg.Groups[i]
		apply := map[string]func(){
			"devices":           func() { g.Devices = f.devices },
			"qos":               func() { g.QoS = f.qos },
			"inflight":          func() { g.InFlight = f.inflight },
			"count":             func() { g.Count = f.count },
			"rate":              func() { g.Rate = f.rate },
			"jitter":            func() { g.Jitter = f.jitter },
			"size":              func() { g.Payload.Size = f.size },
			"format":            func() { g.Payload.Format = f.format },
			"mqtt-version":      func() { g.MQTTVersion = f.mqttVersion },
			"username":          func() { g.Username = f.username },
			"password":          func() { g.Password = f.password },
			"topic":             func() { g.Topic = f.topic },
			"client-id":         func() { g.ClientID = f.clientID },
			"commands":          func() { g.Commands = f.commands },
			"device-id":         func() { g.DeviceID = f.deviceID },
			"malformed":         func() { g.Payload.MalformedShare = f.malformed },
			"schema-violations": func() { g.Payload.SchemaViolationShare = f.schemaViolations },
			"clean":             func() { g.CleanStart = f.clean },
			"keepalive":         func() { g.KeepAlive = f.keepAlive },
		}
		for name, fn := range apply {
			if set[name] {
				fn()
			}
		}
	}
}
