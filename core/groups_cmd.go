package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/groups"
	"github.com/outpost-edge/outpost/core/service"
	"github.com/outpost-edge/outpost/core/tail"
)

// connectJS connects as the tail does (nf's flags) and returns JetStream.
func connectJS(nf natsFlags, name string) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name(name), nats.MaxReconnects(-1)}
	if *nf.creds != "" {
		opts = append(opts, nats.UserCredentials(*nf.creds))
	}
	if *nf.ca != "" {
		opts = append(opts, nats.RootCAs(*nf.ca))
	}
	if *nf.cert != "" || *nf.key != "" {
		opts = append(opts, nats.ClientCert(*nf.cert, *nf.key))
	}
	nc, err := nats.Connect(*nf.url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w (is core running? use -nats URL)", *nf.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// consumeLine is a record as `core consume -json` prints it.
type consumeLine struct {
	Site      string            `json:"site"`
	Node      string            `json:"node"`
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Bucket    int               `json:"bucket"`
	Seq       uint64            `json:"seq"`
	Timestamp time.Time         `json:"timestamp"`
	Key       string            `json:"key,omitempty"`
	MQTTTopic string            `json:"mqtt_topic,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	ValueText *string           `json:"value_text,omitempty"`
	Value     string            `json:"value"`
}

// runConsume is `core consume`: it joins a consumer group and prints each
// record it is given, committing what it printed.
func runConsume(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("core consume", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nf := addNATSFlags(fs, "NATS `URL` to read from")
	*nf.url = "nats://127.0.0.1:4222"
	prefix := fs.String("prefix", service.DefaultConfig().Prefix, "subject `prefix` of all Outpost subjects")
	group := fs.String("group", "", "consumer group `name` (required): members of one group share the topic's buckets")
	topic := fs.String("topic", "", "log `topic` to read (required)")
	from := fs.String("from", "earliest", "where a new group starts: `earliest`, latest or an RFC 3339 time")
	asJSON := fs.Bool("json", false, "print one JSON object per record")
	member := fs.String("member", "", "this member's `name` in the group (default: generated)")
	session := fs.Duration("session-timeout", 5*time.Second, "how long a silent member keeps its buckets (used when the group is created)")
	duration := fs.Duration("for", 0, "leave the group after this `duration` (0: until interrupted)")
	commitEvery := fs.Duration("commit-interval", 250*time.Millisecond, "how often printed positions are committed (a member that dies leaves at most this much to be printed again)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `core consume joins a consumer group on a topic and prints every record the
group gives it, one per line, in order per origin partition. Members of one
group share the topic's buckets: start it several times to spread the load.
Positions are committed after printing, so a restarted group goes on where it
stopped (a member that dies may leave its last records to be printed again by
another). SIGINT or SIGTERM commits and leaves the group cleanly.

  <site>/<node> <topic>/<partition>@<offset> <time> key=.. value=..    (as core tail)
  -json: {"site","node","topic","partition","offset","bucket","seq","timestamp","key","value_text","value"}
         value is base64; value_text is there when the value is UTF-8

Usage:
  core consume -group NAME -topic TOPIC [-from earliest|latest|RFC3339] [-json]

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
	if *group == "" || *topic == "" {
		fmt.Fprintln(stderr, "core consume: -group and -topic are required (core consume -h)")
		return 2
	}
	start, err := groups.ParseStart(*from)
	if err != nil {
		fmt.Fprintf(stderr, "core consume: -from: %v\n", err)
		return 2
	}
	nc, js, err := connectJS(nf, "outpost-core-consume")
	if err != nil {
		fmt.Fprintf(stderr, "core consume: %v\n", err)
		return 1
	}
	defer nc.Close()
	out := bufio.NewWriter(stdout)
	var mu sync.Mutex // buckets are handled concurrently; lines stay whole
	enc := json.NewEncoder(out)
	handler := func(_ context.Context, r groups.Record) error {
		mu.Lock()
		defer mu.Unlock()
		var err error
		if *asJSON {
			err = enc.Encode(toLine(r))
		} else {
			_, err = fmt.Fprintln(out, tail.Format(r.Origin, r.Record))
		}
		if err == nil {
			err = out.Flush() // printed before it counts as handled (committed)
		}
		return err
	}
	logger, _ := newLogger(stderr, "warn")
	m, err := groups.Join(context.Background(), js, groups.Config{
		Group: *group, Topic: *topic, Prefix: *prefix, Member: *member, Start: start,
		SessionTimeout: *session, CommitInterval: *commitEvery, Handler: handler, Logger: logger,
	})
	if err != nil {
		fmt.Fprintf(stderr, "core consume: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	fmt.Fprintf(stderr, "core consume: member %s of group %s on %s (%d buckets)\n", m.ID(), *group, *topic, m.Buckets())
	err = m.Run(ctx)
	st := m.Stats()
	fmt.Fprintf(stderr, "core consume: left the group: %d records printed, %d buckets read", st.Handled, st.Takeovers)
	if st.UncleanTakeovers > 0 {
		fmt.Fprintf(stderr, ", %d taken from a member that died (its last uncommitted records were printed again)", st.UncleanTakeovers)
	}
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "core consume: %v\n", err)
		return 1
	}
	return 0
}

func toLine(r groups.Record) consumeLine {
	l := consumeLine{Site: r.Origin.Site, Node: r.Origin.Node, Topic: r.Origin.Topic, Partition: r.Origin.Partition,
		Offset: r.Offset, Bucket: r.Bucket, Seq: r.Seq, Timestamp: time.Unix(0, r.Timestamp).UTC(),
		Key: string(r.Key), MQTTTopic: r.MQTTTopic, Value: base64.StdEncoding.EncodeToString(r.Value)}
	if utf8.Valid(r.Value) {
		s := string(r.Value)
		l.ValueText = &s
	}
	if len(r.Headers) > 0 {
		l.Headers = map[string]string{}
		for _, h := range r.Headers {
			l.Headers[h.Key] = string(h.Value)
		}
	}
	return l
}

// runGroups is `core groups list|describe|reset|delete`.
func runGroups(args []string, stdout, stderr io.Writer) int {
	usage := `Usage:
  core groups list                                 every group, its topic, members and lag
  core groups describe NAME                        per bucket: committed position, end, lag, member
  core groups reset NAME -topic T -to earliest|latest|RFC3339
                                                   move a stopped group's positions
  core groups delete NAME                          forget a stopped group and its positions
Each takes the NATS flags of core tail (-nats URL, -nats-creds, ...) and -json.
`
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	verb := args[0]
	fs := flag.NewFlagSet("core groups "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	nf := addNATSFlags(fs, "NATS `URL`")
	*nf.url = "nats://127.0.0.1:4222"
	prefix := fs.String("prefix", service.DefaultConfig().Prefix, "subject `prefix` of all Outpost subjects")
	asJSON := fs.Bool("json", false, "print JSON")
	topic := fs.String("topic", "", "reset: the group's `topic`")
	to := fs.String("to", "", "reset: `earliest`, latest or an RFC 3339 time")
	// The group's name comes first (core groups describe NAME -json);
	// flags may follow it.
	rest := args[1:]
	name := ""
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	if verb != "list" && name == "" {
		fmt.Fprintf(stderr, "core groups %s: name the group\n%s", verb, usage)
		return 2
	}
	nc, js, err := connectJS(nf, "outpost-core-groups")
	if err != nil {
		fmt.Fprintf(stderr, "core groups: %v\n", err)
		return 1
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "core groups %s: %v\n", verb, err)
		return 1
	}
	switch verb {
	case "list":
		names, err := groups.List(ctx, js)
		if err != nil {
			return fail(err)
		}
		var infos []groups.GroupInfo
		for _, n := range names {
			gi, err := groups.Describe(ctx, js, *prefix, n)
			if err != nil && !errors.Is(err, groups.ErrNotFound) {
				return fail(err)
			}
			infos = append(infos, gi)
		}
		if *asJSON {
			return printJSON(stdout, stderr, groups.GroupsResponse{Groups: append([]groups.GroupInfo{}, infos...)})
		}
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "GROUP\tTOPIC\tMEMBERS\tBUCKETS\tLAG")
		for _, gi := range infos {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\n", gi.Group, dash(gi.Topic), len(gi.Members), len(gi.Buckets), gi.LagRecords)
		}
		w.Flush()
	case "describe":
		gi, err := groups.Describe(ctx, js, *prefix, name)
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			return printJSON(stdout, stderr, gi)
		}
		fmt.Fprintf(stdout, "group %s, topic %s, %d members, session timeout %gs, lag %d\n\n", gi.Group, dash(gi.Topic), len(gi.Members), gi.SessionTimeout, gi.LagRecords)
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "TOPIC\tBUCKET\tCOMMITTED-SEQ\tEND-SEQ\tLAG\tMEMBER")
		for _, b := range gi.Buckets {
			fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\n", gi.Topic, b.Bucket, b.Committed, b.End, b.LagRecords, dash(b.Member))
		}
		w.Flush()
	case "reset":
		if *topic == "" || *to == "" {
			fmt.Fprintln(stderr, "core groups reset: -topic and -to are required")
			return 2
		}
		start, err := groups.ParseStart(*to)
		if err != nil {
			fmt.Fprintf(stderr, "core groups reset: -to: %v\n", err)
			return 2
		}
		if err := groups.Reset(ctx, js, *prefix, name, *topic, start); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "group %s: positions on %s reset to %s\n", name, *topic, *to)
	case "delete":
		if err := groups.Delete(ctx, js, name); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "group %s deleted\n", name)
	default:
		fmt.Fprintf(stderr, "core groups: unknown command %q\n%s", verb, usage)
		return 2
	}
	return 0
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
