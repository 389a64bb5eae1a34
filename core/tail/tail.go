package tail

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// Format returns the line for record r of a message from origin o, without
// a trailing newline.
func Format(o wire.Origin, r wire.Record) string {
	var b strings.Builder
	b.WriteString(o.Site)
	b.WriteByte('/')
	b.WriteString(o.Node)
	b.WriteByte(' ')
	b.WriteString(o.Topic)
	b.WriteByte('/')
	b.WriteString(strconv.FormatInt(int64(o.Partition), 10))
	b.WriteByte('@')
	b.WriteString(strconv.FormatInt(r.Offset, 10))
	b.WriteByte(' ')
	b.WriteString(time.Unix(0, r.Timestamp).UTC().Format(time.RFC3339Nano))
	b.WriteString(" key=")
	b.WriteString(show(r.Key, false))
	if r.MQTTTopic != "" {
		b.WriteString(" mqtt=")
		b.WriteString(show([]byte(r.MQTTTopic), false))
	}
	if r.SchemaID != 0 {
		b.WriteString(" schema=")
		b.WriteString(strconv.FormatInt(r.SchemaID, 10))
	}
	for _, h := range r.Headers {
		b.WriteString(" h:")
		b.WriteString(show([]byte(h.Key), false))
		b.WriteByte('=')
		b.WriteString(show(h.Value, false))
	}
	b.WriteString(" value=")
	b.WriteString(show(r.Value, true))
	return b.String()
}

// show renders bytes for one line. Spaces are allowed raw only in the
// last field; anything that could be misread is quoted; non-UTF-8 is
// base64.
func show(p []byte, last bool) string {
	if !utf8.Valid(p) {
		return "b64:" + base64.StdEncoding.EncodeToString(p)
	}
	s := string(p)
	quote := s == "" || strings.HasPrefix(s, "b64:") || strings.HasPrefix(s, `"`)
	for _, r := range s {
		if r == ' ' {
			quote = quote || !last
		} else if !unicode.IsPrint(r) {
			quote = true
		}
	}
	if quote {
		return strconv.Quote(s)
	}
	return s
}

// Options choose what Run follows.
type Options struct {
	// Prefix is the subject prefix (wire.DefaultPrefix if empty).
	Prefix string
	// Topics to follow; empty follows every stream of Prefix, including
	// ones created while Run runs.
	Topics []string
	// FromStart prints what the streams already hold before new records.
	FromStart bool
	// Rescan is how often Run looks for new streams when Topics is empty
	// (5 s if zero).
	Rescan time.Duration
}

// Run prints records to out (and undecodable messages to errOut) until ctx
// is done.
func Run(ctx context.Context, js jetstream.JetStream, opts Options, out, errOut io.Writer) error {
	if opts.Prefix == "" {
		opts.Prefix = wire.DefaultPrefix
	}
	if opts.Rescan == 0 {
		opts.Rescan = 5 * time.Second
	}
	for _, t := range opts.Topics {
		if err := wire.ValidateTopic(t); err != nil {
			return fmt.Errorf("tail: %w", err)
		}
	}
	p := &printer{out: out, errOut: errOut}
	// "As they arrive" means stored since Run started, also in streams
	// found later: a stream created after start may already hold records
	// by the time the rescan sees it.
	start := time.Now()
	following := make(map[string]jetstream.ConsumeContext)
	defer func() {
		for _, cc := range following {
			cc.Stop()
		}
	}()
	follow := func(name string) error {
		if _, ok := following[name]; ok {
			return nil
		}
		st, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start}
		if opts.FromStart {
			cfg.DeliverPolicy = jetstream.DeliverAllPolicy
		}
		cons, err := st.OrderedConsumer(ctx, cfg)
		if err != nil {
			return fmt.Errorf("consumer on %s: %w", name, err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) { p.print(name, m) })
		if err != nil {
			return fmt.Errorf("consume %s: %w", name, err)
		}
		following[name] = cc
		return nil
	}

	if len(opts.Topics) > 0 {
		for _, t := range opts.Topics {
			name := wire.StreamName(opts.Prefix, t)
			if err := follow(name); err != nil {
				if errors.Is(err, jetstream.ErrStreamNotFound) {
					return fmt.Errorf("tail: no stream %s for topic %q yet: start an edge that forwards it, or list it under streams.topics in the core config", name, t)
				}
				return fmt.Errorf("tail: %w", err)
			}
		}
		<-ctx.Done()
		return nil
	}

	tick := time.NewTicker(opts.Rescan)
	defer tick.Stop()
	for {
		names, err := streamsOf(ctx, js, opts.Prefix)
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(errOut, "# tail: listing streams: %v\n", err)
		}
		for _, n := range names {
			if err := follow(n); err != nil && ctx.Err() == nil {
				fmt.Fprintf(errOut, "# tail: %v\n", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// streamsOf lists the streams core provisioned for prefix, recognised by
// their metadata (so operator streams that merely share the name prefix are
// not followed).
func streamsOf(ctx context.Context, js jetstream.JetStream, prefix string) ([]string, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l := js.ListStreams(lctx, jetstream.WithStreamListSubject(prefix+".>"))
	var names []string
	for info := range l.Info() {
		if info.Config.Metadata[wire.MetadataPrefix] == prefix {
			names = append(names, info.Config.Name)
		}
	}
	return names, l.Err()
}

type printer struct {
	mu     sync.Mutex
	out    io.Writer
	errOut io.Writer
}

func (p *printer) print(stream string, m jetstream.Msg) {
	msg, err := wire.Parse(m.Headers(), m.Data())
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		seq := uint64(0)
		if md, merr := m.Metadata(); merr == nil {
			seq = md.Sequence.Stream
		}
		fmt.Fprintf(p.errOut, "# %s seq %d subject %s: %v\n", stream, seq, m.Subject(), err)
		return
	}
	for _, r := range msg.Records {
		fmt.Fprintln(p.out, Format(msg.Origin, r))
	}
}
