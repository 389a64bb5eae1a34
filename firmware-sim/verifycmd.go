package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/firmware-sim/verify"
)

const verifyUsage = `Usage: firmware-sim verify [flags]

Checks every device's sequence numbers for gaps and duplicates. Exactly one
source:
  -broker URL       subscribe (QoS -qos) to -topic and read until -expect
                    messages arrived or none came for -idle
  -file PATH        a file of JSON lines: readings, or {"value":"<base64>"}
                    records as the edge HTTP API returns ("-" for stdin)
  -http URL         the edge HTTP API: GET URL/v1/topics/{-http-topic}/
                    partitions/{p}/records for each of -partitions

Start the subscriber before the fleet, e.g.
  firmware-sim verify -broker tcp://127.0.0.1:1883 -topic 'sensors/#' -expect 6000 &
  firmware-sim -devices 6 -count 1000 -rate 0 -inflight 50

Exit status: 0 no gaps and no duplicates, 1 error, 2 usage, 4 gaps or duplicates.

Flags:
`

func runVerify(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("firmware-sim verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, verifyUsage)
		fs.PrintDefaults()
	}
	var (
		broker, topics, file, httpURL, httpTopic, parts, token string
		username, password, mqttVersion                        string
		qos                                                    int
		expect, expectCount                                    int64
		idle                                                   time.Duration
		fromFirst, jsonOut, follow                             bool
		tf                                                     tlsFlags
	)
	fs.StringVar(&broker, "broker", "", "broker URL to subscribe to")
	fs.StringVar(&topics, "topic", "sensors/#", "topic filters, comma-separated")
	fs.IntVar(&qos, "qos", 1, "subscription QoS")
	fs.StringVar(&mqttVersion, "mqtt-version", "5", "MQTT version: 3 or 5")
	fs.StringVar(&username, "username", "", "MQTT username")
	fs.StringVar(&password, "password", "", "MQTT password")
	fs.StringVar(&file, "file", "", "JSON lines file ('-' for stdin)")
	fs.StringVar(&httpURL, "http", "", "edge HTTP API base URL, e.g. http://127.0.0.1:8080")
	fs.StringVar(&httpTopic, "http-topic", "telemetry", "log topic to read with -http")
	fs.StringVar(&parts, "partitions", "0", "partitions to read with -http: list and ranges, e.g. 0-3,7")
	fs.StringVar(&token, "token", "", "bearer token for -http")
	fs.BoolVar(&follow, "follow", false, "with -http, keep polling until nothing new arrived for -idle")
	fs.Int64Var(&expect, "expect", 0, "with -broker, stop after this many messages")
	fs.Int64Var(&expectCount, "expect-count", 0, "readings each device sent (firmware-sim -count): missing ones at the end are gaps too")
	fs.DurationVar(&idle, "idle", 5*time.Second, "stop after this long without a message")
	fs.BoolVar(&fromFirst, "from-first-seen", false, "ignore sequence numbers below the first one seen per device (joined a running fleet)")
	fs.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	tf.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	n := 0
	for _, s := range []string{broker, file, httpURL} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usageError(stderr, "verify: give exactly one of -broker, -file, -http")
	}
	var src verify.Source
	switch {
	case broker != "":
		v, err := strconv.Atoi(mqttVersion)
		if err != nil || (v != 3 && v != 5) {
			return usageError(stderr, "verify: -mqtt-version %q, want 3 or 5", mqttVersion)
		}
		if qos < 0 || qos > 2 {
			return usageError(stderr, "verify: -qos %d, want 0, 1 or 2", qos)
		}
		tc, err := tf.config()
		if err != nil {
			return usageError(stderr, "verify: %v", err)
		}
		src = verify.MQTTSource{Broker: broker, Filters: strings.Split(topics, ","), QoS: byte(qos),
			Version: v, Username: username, Password: password, TLS: tc, Expect: expect, Idle: idle,
			Ready: func() { fmt.Fprintf(stderr, "verify: subscribed to %s on %s\n", topics, broker) }}
	case file != "":
		r := stdin
		if file != "-" {
			fh, err := os.Open(file)
			if err != nil {
				return usageError(stderr, "verify: %v", err)
			}
			defer fh.Close()
			r = fh
		}
		src = verify.FileSource{R: r, Name: file}
	default:
		ps, err := parsePartitions(parts)
		if err != nil {
			return usageError(stderr, "verify: -partitions: %v", err)
		}
		src = verify.HTTPSource{BaseURL: strings.TrimRight(httpURL, "/"), Topic: httpTopic, Partitions: ps,
			Follow: follow, Idle: idle, Token: token}
	}
	c := verify.New(verify.Options{FromFirstSeen: fromFirst})
	err := src.Run(ctx, func(r verify.Record) error {
		_ = c.AddRecord(r)
		return nil
	})
	rep := c.Report()
	if expectCount > 0 {
		// Devices that sent nothing at all cannot be named here; the
		// fleet's summary counts them.
		for _, p := range c.Devices() {
			c.Expect(p, expectCount)
		}
		rep = c.Report()
	}
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		_ = rep.WriteText(stdout)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "firmware-sim verify: %v\n", err)
		return exitError
	}
	if !rep.OK {
		return exitVerified
	}
	return exitOK
}

func parsePartitions(s string) ([]int32, error) {
	var out []int32
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.ParseInt(lo, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a partition number", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 32); err != nil || b < a {
				return nil, fmt.Errorf("%q is not a range", part)
			}
		}
		for p := a; p <= b; p++ {
			out = append(out, int32(p))
		}
	}
	return out, nil
}
