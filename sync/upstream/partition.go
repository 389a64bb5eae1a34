package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// partition forwards one log partition. Only its run goroutine sends; the
// fields below mu are read by Lag and Protect from other goroutines.
type partition struct {
	f       *Forwarder
	key     partKey
	src     source
	enc     *wire.Encoder
	subject string
	stream  string
	pkey    string // partition label value

	running bool // a run goroutine is active; guarded by Forwarder.mu

	// acked is the next offset to forward: every record below it is in the
	// stream. -1 until the first resolve. Set it with setAcked.
	acked atomic.Int64
	// hold keeps retention off the records not yet forwarded (nil if the
	// source keeps no holds); setAcked moves it with acked.
	hold *log.Hold
	// committed is the last value written to the cursor store, -1 none.
	committed atomic.Int64

	mu      sync.Mutex
	errKind errKind // why forwarding is paused; kindNone while it runs
	errText string
	live    bool
	headOff int64 // offset whose timestamp headTS caches, -1 none
	headTS  int64

	// redo, owned by run, is set when the server refused a publish, or a
	// publish failed and a later one of the same window succeeded: the
	// stream may lack a record below its last offset, so the next resume
	// resends from the first unacknowledged record instead (the duplicate
	// window drops what was stored). It is saved in the cursor store until
	// the resend has passed it, so a restart in between does not resume
	// after the stream's last record and leave the hole.
	redo         *redo
	warnedWindow bool // the short duplicate window warning was logged
	// redoSaved: a redo is in the store; cleared once acked passes its until.
	redoSaved bool
	// redoLoaded: the store was asked for a redo a previous process saved
	// (once per partition and process; later redos are known in memory).
	redoLoaded bool
	redoUntil  int64
}

// redo is a resend armed by abort. It is stored as JSON (version 1).
type redo struct {
	V    int       `json:"v"`
	From int64     `json:"from"`  // first unacknowledged record
	To   int64     `json:"until"` // last record that was in flight: the resend is done once past it
	At   time.Time `json:"at"`    // when the failure happened (the duplicate window counts from it)
	// Suspect: a later publish of the window succeeded, so the stream may
	// hold records after From; otherwise the server refused From and the
	// stream ends below it.
	Suspect bool   `json:"suspect"`
	Cuts    []span `json:"cuts,omitempty"` // batch boundaries to repeat, so resends carry the same Nats-Msg-Id
}

// minSafeDupWindow is the shortest duplicate window the forwarder does not
// warn about. The window must outlast the time a server takes to store what
// a dead connection had in flight (at most a window of messages, normally
// milliseconds) plus a restart; core's default is 2 minutes.
const minSafeDupWindow = 10 * time.Second

// redoBucket is the cursor store bucket resends are saved in, keyed by
// cursor name, topic and partition.
const redoBucket = "upstream.redo"

type span struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

func newPartition(f *Forwarder, k partKey, src source) (*partition, error) {
	o := wire.Origin{Site: f.cfg.Site, Node: f.cfg.Node, Topic: k.topic, Partition: k.part}
	enc, err := wire.NewEncoder(f.cfg.Prefix, o)
	if err != nil {
		return nil, err
	}
	p := &partition{f: f, key: k, src: src, enc: enc, subject: enc.Subject(),
		stream: wire.StreamName(f.cfg.Prefix, k.topic), pkey: strconv.FormatInt(int64(k.part), 10), headOff: -1}
	p.acked.Store(-1)
	p.committed.Store(-1)
	if h, ok := src.(holder); ok {
		if p.hold, err = h.Hold(f.cfg.CursorName); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// setAcked moves acked, and the retention hold with it.
func (p *partition) setAcked(next int64) {
	p.acked.Store(next)
	if p.hold != nil {
		p.hold.Set(next)
	}
}

// holdFromCursor sets the retention hold from the cursor store before the
// first resolve, so that retention keeps what was not forwarded before a
// restart but may delete what was (the hold starts at 0, everything, and
// stays there if the store cannot say).
func (p *partition) holdFromCursor(ctx context.Context) {
	if p.hold == nil {
		return
	}
	off, ok, err := p.f.cursors.Cursor(ctx, p.f.cfg.CursorName, p.key.topic, p.key.part)
	if err == nil && ok {
		p.hold.Set(off)
	}
}

func sortPartitions(ps []*partition) {
	slices.SortFunc(ps, func(a, b *partition) int {
		if c := strings.Compare(a.key.topic, b.key.topic); c != 0 {
			return c
		}
		return int(a.key.part) - int(b.key.part)
	})
}

// run is the partition's loop: resolve where to resume, pump, and on any
// error pause with backoff and start over from what the stream holds.
func (p *partition) run(ctx context.Context) {
	attempt := 0
	for {
		ln, err := p.f.waitLink(ctx)
		if err != nil {
			return
		}
		progressed, err := p.forward(ctx, ln)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			attempt = 0
		}
		if errors.Is(err, errStreamMoved) {
			// Messages of an earlier connection landed after the resume
			// point was read: read it again (not an error; see pump).
			p.f.m.resumes.WithLabelValues("moved").Inc()
			p.f.log.Debug("upstream: the stream moved while resuming; resolving again", "topic", p.key.topic, "partition", p.key.part, "err", err)
			sleepCtx(ctx, p.f.backoff(0))
			continue
		}
		kind := p.setError(err)
		if kind == kindDisconnected {
			// waitLink does the waiting; a short jitter keeps partitions from
			// resolving all at once on reconnect.
			sleepCtx(ctx, p.f.backoff(0))
			continue
		}
		sleepCtx(ctx, p.f.backoff(attempt))
		attempt++
	}
}

// setError records why forwarding paused, counts it, and logs it only when
// the kind changes (including back to running).
func (p *partition) setError(err error) errKind {
	kind := classify(err)
	if kind == kindTimeout && time.Since(time.Unix(0, p.f.lastPerm.Load())) < 2*p.f.cfg.AckTimeout+time.Second {
		// The server drops a publish it refuses for permissions and only
		// tells the connection's error handler; the publish then times out.
		kind = kindPermission
	}
	p.mu.Lock()
	prev := p.errKind
	p.errKind = kind
	p.errText = ""
	if err != nil {
		p.errText = string(kind) + ": " + err.Error()
	}
	p.mu.Unlock()
	if kind == kindNone {
		if prev != kindNone && prev != kindDisconnected {
			p.f.log.Info("upstream: forwarding resumed", "topic", p.key.topic, "partition", p.key.part, "was", string(prev))
		}
		return kind
	}
	p.f.m.publishErrors.WithLabelValues(string(kind)).Inc()
	// A disconnect is logged once for the connection, not per partition.
	if kind != prev && kind != kindDisconnected {
		lvl := p.f.log.Warn
		if kind == kindStreamMissing || kind == kindPermission || kind == kindOther {
			lvl = p.f.log.Error
		}
		lvl("upstream: forwarding paused", "topic", p.key.topic, "partition", p.key.part, "stream", p.stream,
			"kind", string(kind), "err", err, "advice", advice(kind))
	}
	return kind
}

// forward resolves the resume point and pumps until an error.
func (p *partition) forward(ctx context.Context, ln *link) (bool, error) {
	epoch := ln.epoch()
	if !ln.up() {
		return false, ErrNotConnected
	}
	next, cuts, lastSeq, err := p.resolve(ctx, ln)
	if err != nil {
		return false, err
	}
	return p.pump(ctx, ln, epoch, next, cuts, lastSeq)
}

// resolve returns the offset to resume from: after the last record the
// stream holds on the partition's subject; if it holds none, the cursor; if
// there is none, the log start. The result is kept within what the log can
// give and persisted as the cursor. lastSeq is the stream sequence of the
// last message on the subject (0 if none), for the first publish's
// expectation.
func (p *partition) resolve(ctx context.Context, ln *link) (next int64, cuts []span, lastSeq uint64, err error) {
	f := p.f
	rctx, cancel := context.WithTimeout(ctx, f.cfg.AckTimeout)
	defer cancel()
	st, err := ln.js.Stream(rctx, p.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if !f.cfg.CreateStreams {
			return 0, nil, 0, fmt.Errorf("%w: %s (topic %q); run core, or set create_streams", ErrStreamMissing, p.stream, p.key.topic)
		}
		st, err = p.provision(rctx, ln)
	}
	if err != nil {
		return 0, nil, 0, fmt.Errorf("upstream: stream %s: %w", p.stream, err)
	}
	last, lastSeq, found, err := wire.LastPosition(rctx, st, p.subject)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("upstream: %w", err)
	}
	cur, curOK, err := f.cursors.Cursor(ctx, f.cfg.CursorName, p.key.topic, p.key.part)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("upstream: read cursor: %w", err)
	}
	// known is the furthest this node has seen acknowledged.
	known := p.acked.Load()
	if curOK {
		known = max(known, cur)
	}
	start, end := p.src.StartOffset(), p.src.EndOffset()
	lg := f.log.With("topic", p.key.topic, "partition", p.key.part, "subject", p.subject)

	var from string
	dupWindow := st.CachedInfo().Config.Duplicates
	if dupWindow < minSafeDupWindow && !p.warnedWindow {
		p.warnedWindow = true
		lg.Warn("upstream: the stream's duplicate window is short: after a restart or reconnect, messages the previous connection "+
			"had in flight that the server stores late can be stored twice; use a duplicate_window of at least "+minSafeDupWindow.String(),
			"stream", p.stream, "duplicate_window", dupWindow)
	}
	r := p.redo
	p.redo = nil
	if !p.redoLoaded && r == nil {
		// First resolve since start: a resend armed before a restart. (One
		// armed in this process replaced any saved one under the same key.)
		if r, err = p.loadRedo(ctx); err != nil {
			return 0, nil, 0, err
		}
		if r != nil {
			p.redoSaved, p.redoUntil = true, r.To
			lg.Warn("upstream: resuming a resend armed before the restart", "from", r.From, "until", r.To, "armed_at", r.At)
		}
	}
	p.redoLoaded = true
	switch {
	case r != nil && (!found || last >= r.From-1):
		next, cuts, from = r.From, r.Cuts, "resend"
		if !r.Suspect || !found || last < r.From {
			// The server refused From and holds nothing after it: an exact
			// resume, nothing can be duplicated or reordered.
			break
		}
		if time.Since(r.At) < dupWindow/2 {
			lg.Warn("upstream: resending from the first unacknowledged record: a publish failed and a later one succeeded, "+
				"so the stream may lack a record below its last; the duplicate window drops what it has, a missing record lands after later ones",
				"from", next, "stream_last", last)
			break
		}
		// The failure is older than the duplicate window can be trusted to
		// cover (a partial failure followed by a long outage). Resuming
		// after the stream's last record would lose the missing records for
		// good; resending may duplicate records the stream already holds
		// after them. A duplicate carries its origin offset and can be
		// dropped downstream; a lost record cannot be recovered, so resend.
		f.m.lateResends.Inc()
		lg.Error("upstream: resending from the first unacknowledged record although the failure is older than the duplicate window: "+
			"the stream may receive duplicates of records after it (same origin offset); resuming after the stream's last record would lose records",
			"from", next, "stream_last", last, "failed_at", r.At)
	case found:
		if r != nil {
			// The stream ends below the resend's start: it lost records it
			// had acknowledged (see below); the resend is moot.
			lg.Error("upstream: a resend was armed but the stream now ends below it; the stream may lack records",
				"resend_from", r.From, "stream_last", last)
			p.clearRedo(ctx)
		}
		next, from = last+1, "stream"
		if known > next {
			// The stream lost records it acknowledged (max_age, a purge, or a
			// power cut at a centre without sync_interval: always). Resending
			// could undo a purge; keep going from what this node knows.
			f.m.gapRecords.WithLabelValues("stream_behind").Add(float64(known - next))
			lg.Error("upstream: the stream holds fewer records than it acknowledged; not resending them",
				"stream_next", next, "forwarded", known, "missing", known-next)
			next, from = known, "cursor"
		}
	case known >= 0:
		next, from = known, "cursor"
	default:
		next, from = start, "log_start"
	}
	if next < start {
		f.m.gapRecords.WithLabelValues("retention").Add(float64(start - next))
		lg.Error("upstream: records were deleted at the edge before they were forwarded (disk budget)",
			"from", next, "log_start", start, "lost", start-next)
		next, cuts = start, nil
	}
	if next > end && p.acked.Load() < next {
		// The stream is ahead of the log: this node's disk was restored from
		// an older copy, or its log was reset. Offsets [end, next) will be
		// written again with other records; sending them would either be
		// dropped as duplicates or give the stream two different records at
		// one offset. They are skipped, counted and logged.
		f.m.gapRecords.WithLabelValues("stream_ahead").Add(float64(next - end))
		lg.Error("upstream: the stream holds offsets beyond the end of the log (disk restored from an older copy?); "+
			"records written at these offsets will NOT be forwarded", "log_end", end, "stream_next", next, "skipped", next-end)
	}
	f.m.resumes.WithLabelValues(from).Inc()
	lg.Debug("upstream: resuming", "from", next, "source", from)
	p.setAcked(next)
	if !curOK || cur != next {
		if err := p.commitCursor(ctx, next); err != nil {
			return 0, nil, 0, err
		}
	}
	return next, cuts, lastSeq, nil
}

func (p *partition) commitCursor(ctx context.Context, off int64) error {
	if err := p.f.cursors.SetCursor(ctx, p.f.cfg.CursorName, p.key.topic, p.key.part, off); err != nil {
		p.f.log.Warn("upstream: cursor not saved", "topic", p.key.topic, "partition", p.key.part, "offset", off, "err", err)
		return fmt.Errorf("upstream: save cursor: %w", err)
	}
	// Concurrent commits (resolve and the cursor loop) may finish out of
	// order; the cursor loop writes again if the stored value is behind.
	p.committed.Store(off)
	return nil
}

// provision asks core for the stream and, if no core answers, creates it
// with core's default shape.
func (p *partition) provision(ctx context.Context, ln *link) (jetstream.Stream, error) {
	f := p.f
	_, err := wire.RequestProvision(ctx, ln.nc, f.cfg.Prefix, f.cfg.Site, f.cfg.Node, p.key.topic)
	switch {
	case err == nil:
		return ln.js.Stream(ctx, p.stream)
	case errors.Is(err, nats.ErrNoResponders):
		cfg, cerr := wire.StreamConfig(f.cfg.Prefix, p.key.topic, wire.TopicConfig{})
		if cerr != nil {
			return nil, cerr
		}
		st, cerr := ln.js.CreateStream(ctx, cfg)
		if errors.Is(cerr, jetstream.ErrStreamNameAlreadyInUse) {
			return ln.js.Stream(ctx, p.stream)
		}
		if cerr != nil {
			return nil, fmt.Errorf("%w: %s: no core answered and creating it failed: %w", ErrStreamMissing, p.stream, cerr)
		}
		f.log.Info("upstream: created stream (no core answered the provision request)", "stream", p.stream, "topic", p.key.topic)
		return st, nil
	case errors.Is(err, wire.ErrProvisionRefused):
		return nil, fmt.Errorf("%w: %w", ErrStreamMissing, err)
	}
	return nil, err
}

// inflight is one published, not yet acknowledged message.
type inflight struct {
	first, last int64
	records     int
	bytes       int // message data, for the forwarded bytes metric
	size        int // data and headers, taken from the in-flight budget
	fut         jetstream.PubAckFuture
	at          time.Time // when it was published
}

// pump reads from next on and publishes with a window of unacknowledged
// messages, moving acked along the contiguous prefix of PubAcks, until an
// error. Nothing is skipped and nothing is sent out of order: on any error
// it stops sending, collects the outcome of what is in flight and returns,
// and the caller resolves the resume point again from the stream.
//
// The first message after a resume goes alone and carries
// Nats-Expected-Last-Subject-Sequence = lastSeq: if anything landed on the
// subject since resolve read it (messages an earlier connection or process
// sent that the server stored only afterwards), the server refuses it and
// the pump returns errStreamMoved instead of sending the same offsets again,
// which the duplicate window would drop only if it is still open. Its
// acknowledgement opens the window.
func (p *partition) pump(ctx context.Context, ln *link, epoch uint64, next int64, cuts []span, lastSeq uint64) (progressed bool, err error) {
	f := p.f
	cfg := &f.cfg
	var (
		q       []inflight
		qBytes  int
		buf     []log.Record // read ahead, not yet published
		sent    = next
		inLive  bool
		wasLive bool
		woke    bool // an ack woke the wait: harvest whatever else is in
	)
	defer func() {
		// Whatever is still in q is acknowledged, failed or abandoned now.
		f.sched.release(qBytes)
		if inLive {
			f.sched.exitLive()
		}
	}()
	maxPayload := int(ln.nc.MaxPayload())
	// One message until the stream takes one: the conditional first
	// message must be the only one in flight (the ones after it would be
	// stored even if it is refused), and a paused partition probes instead
	// of sending a whole window to a stream that is full or refuses it.
	window := 1
	conditional := true
	ack := func(h inflight) {
		p.setAcked(h.last + 1)
		if p.redoSaved && h.last >= p.redoUntil {
			p.clearRedo(ctx)
		}
		f.m.forwardedRecords.WithLabelValues(p.key.topic, p.pkey).Add(float64(h.records))
		f.m.forwardedBytes.WithLabelValues(p.key.topic, p.pkey).Add(float64(h.bytes))
		if !progressed {
			progressed = true
			window = cfg.Window
			p.setError(nil)
		}
	}
	for {
		// Collect acknowledgements that are in, oldest first. Checking a
		// future takes nats.go's publisher lock, so with room in the window it
		// is done only every few messages.
	harvest:
		for len(q) > 0 && (len(q) >= window || sent%16 == 0 || woke) {
			select {
			case <-q[0].fut.Ok():
				ack(q[0])
				qBytes -= q[0].size
				f.sched.release(q[0].size)
				q = q[1:]
			case err := <-q[0].fut.Err():
				return progressed, p.abort(ctx, q, true, err)
			default:
				break harvest
			}
		}
		woke = false
		end := p.src.EndOffset()
		live := end-sent <= cfg.LiveLagRecords
		if live != wasLive {
			p.mu.Lock()
			p.live = live
			p.mu.Unlock()
			wasLive = live
		}
		room := len(q) < window && qBytes < maxInflightBytes
		if room && len(buf) == 0 && sent < end {
			recs, err := p.src.Read(ctx, sent, cfg.MaxReadBytes)
			if err != nil {
				return progressed, p.abort(ctx, q, false, fmt.Errorf("upstream: read %s/%d at %d: %w", p.key.topic, p.key.part, sent, err))
			}
			if len(recs) == 0 || recs[0].Offset != sent {
				return progressed, p.abort(ctx, q, false, fmt.Errorf("upstream: read %s/%d at %d returned no record or the wrong one", p.key.topic, p.key.part, sent))
			}
			buf = recs
		}
		if room && len(buf) > 0 && len(cuts) > 0 {
			// Repeating a batch: its records must all be at hand, so the resend
			// has the same bounds and Nats-Msg-Id as the first send.
			for len(cuts) > 0 && cuts[0].Last < buf[0].Offset {
				cuts = cuts[1:]
			}
			for len(cuts) > 0 && cuts[0].First == buf[0].Offset && buf[len(buf)-1].Offset < cuts[0].Last {
				more, err := p.src.Read(ctx, buf[len(buf)-1].Offset+1, cfg.MaxReadBytes)
				if err == nil && len(more) == 0 {
					err = errors.New("no record")
				}
				if err != nil {
					return progressed, p.abort(ctx, q, false, fmt.Errorf("upstream: read %s/%d at %d: %w", p.key.topic, p.key.part, buf[len(buf)-1].Offset+1, err))
				}
				buf = append(buf, more...)
			}
		}
		if room && len(buf) > 0 {
			if live != inLive {
				if live {
					f.sched.enterLive()
				} else {
					f.sched.exitLive()
				}
				inLive = live
			}
			msg, n, err := p.message(buf, &cuts, maxPayload)
			if err != nil {
				return progressed, p.abort(ctx, q, false, err)
			}
			if conditional {
				msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(lastSeq, 10))
				conditional = false
			}
			size := len(msg.Data) + headerBytes(msg.Header)
			if err := f.sched.acquire(ctx, size, live); err != nil {
				return progressed, p.abort(ctx, q, false, err)
			}
			// The fence: every message of a window goes out on the connection
			// the window started on, or not at all (see gate). A publish while
			// nats.go reconnects fails anyway (no reconnect buffer).
			if !ln.up() || !ln.gate.enter(epoch) {
				f.sched.release(size)
				return progressed, p.abort(ctx, q, false, ErrNotConnected)
			}
			fut, err := ln.js.PublishMsgAsync(msg, jetstream.WithRetryAttempts(0))
			ln.gate.exit()
			if err != nil {
				f.sched.release(size)
				if errors.Is(err, nats.ErrMaxPayload) {
					err = fmt.Errorf("%w: %s/%d offset %d (%d bytes, max_payload %d); raise max_payload on the server",
						ErrRecordTooLarge, p.key.topic, p.key.part, buf[0].Offset, size, maxPayload)
				}
				return progressed, p.abort(ctx, q, false, err)
			}
			h := inflight{first: buf[0].Offset, last: buf[n-1].Offset, records: n, bytes: len(msg.Data), size: size, fut: fut, at: time.Now()}
			q = append(q, h)
			qBytes += h.size
			sent = h.last + 1
			buf = buf[n:]
			continue
		}
		// Window full and the read-ahead running low: read now, while the
		// acks are on their way, so the window does not drain while the next
		// read runs (one read per MaxReadBytes would otherwise stall the
		// pipeline every time).
		if !room && len(buf) < window && sent+int64(len(buf)) < end && len(cuts) == 0 {
			at := sent + int64(len(buf))
			more, err := p.src.Read(ctx, at, cfg.MaxReadBytes)
			if err == nil && (len(more) == 0 || more[0].Offset != at) {
				err = errors.New("returned no record or the wrong one")
			}
			if err != nil {
				return progressed, p.abort(ctx, q, false, fmt.Errorf("upstream: read %s/%d at %d: %w", p.key.topic, p.key.part, at, err))
			}
			buf = append(buf, more...)
			woke = true
			continue
		}
		// Nothing to send now: wait for an ack, for the log to grow, or for
		// the connection to change.
		if inLive {
			f.sched.exitLive()
			inLive = false
		}
		var okCh <-chan *jetstream.PubAck
		var errCh <-chan error
		if len(q) > 0 {
			okCh, errCh = q[0].fut.Ok(), q[0].fut.Err()
		}
		var grow <-chan struct{}
		if room && sent >= end {
			grow = p.src.Notify(sent)
		}
		changed := f.changed.wait()
		select {
		case <-ctx.Done():
			return progressed, ctx.Err()
		case <-okCh:
			ack(q[0])
			qBytes -= q[0].size
			f.sched.release(q[0].size)
			q = q[1:]
			// Acks come in bursts: take every one that is in before
			// publishing again, so one wake-up refills the window by many.
			woke = true
		case err := <-errCh:
			return progressed, p.abort(ctx, q, true, err)
		case <-grow:
		case <-changed:
			if ln.epoch() != epoch || !ln.up() {
				return progressed, p.abort(ctx, q, false, ErrNotConnected)
			}
		}
	}
}

// abort stops a pump: it waits for the outcome of every message still in
// flight (each ends by ack, error or AckTimeout), moves acked along any
// further contiguous acks, and arms a resend from the first failed message
// when the stream may not end right below it: the server refused it (a
// refusal is no proof the ones before it were the last stored; it often
// clears while later messages are in flight), or a later message
// succeeded. Otherwise every failure was an unknown outcome (timeout,
// disconnect) on the window's one connection, where the stream holds a
// prefix of the window, and resuming after the stream's last record is
// exact. headFailed says q[0] is the message that failed with err.
func (p *partition) abort(ctx context.Context, q []inflight, headFailed bool, err error) error {
	if headFailed && len(q) == 1 && isStreamMoved(err) {
		// The conditional first message after a resume: nothing else is in
		// flight and the stream holds more than resolve saw.
		return fmt.Errorf("%w: %w", errStreamMoved, err)
	}
	failedAt := -1
	refused := false
	if headFailed {
		failedAt = 0
		refused = isRefusal(err)
	}
	suspect := false
	for i := range q {
		if i == failedAt {
			continue
		}
		select {
		case <-q[i].fut.Ok():
			if failedAt < 0 {
				p.setAcked(q[i].last + 1)
				p.f.m.forwardedRecords.WithLabelValues(p.key.topic, p.pkey).Add(float64(q[i].records))
				p.f.m.forwardedBytes.WithLabelValues(p.key.topic, p.pkey).Add(float64(q[i].bytes))
			} else {
				suspect = true
			}
		case e := <-q[i].fut.Err():
			if failedAt < 0 {
				failedAt = i
				refused = isRefusal(e)
				if !headFailed {
					err = e
				}
			}
		case <-ctx.Done():
			return err
		}
	}
	if failedAt < 0 || !(suspect || refused) {
		if p.redoSaved && p.acked.Load() > p.redoUntil {
			p.clearRedo(ctx)
		}
		return err
	}
	// The duplicate window counts from when the server saw a message, so
	// the resend's age is that of the oldest message it repeats.
	r := &redo{V: 1, From: q[failedAt].first, To: q[len(q)-1].last, At: q[failedAt].at, Suspect: suspect}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	if p.f.cfg.Mode == ModeBatch {
		for _, h := range q[failedAt:] {
			r.Cuts = append(r.Cuts, span{h.first, h.last})
		}
	}
	if p.redoSaved {
		// An earlier resend is not through yet: keep its end too.
		r.To = max(r.To, p.redoUntil)
	}
	p.redo = r
	p.saveRedo(ctx, r)
	return err
}

// isRefusal tells a definite "not stored" answer from the server (an API
// error, or no stream listening) from an unknown outcome.
func isRefusal(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// errStreamMoved: the conditional first message after a resume was refused
// because the subject's last message is no longer the one resolve read.
var errStreamMoved = errors.New("upstream: the stream moved since the resume point was read")

func isStreamMoved(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func (p *partition) redoKey() string {
	return p.f.cfg.CursorName + "/" + p.key.topic + "/" + p.pkey
}

// saveRedo stores r so a restart resumes the resend. If the store fails the
// resend still happens in this run; the failure is logged, since a restart
// before it completes could then leave a hole.
func (p *partition) saveRedo(ctx context.Context, r *redo) {
	p.f.m.redoPersisted.Inc()
	b, err := json.Marshal(r)
	if err == nil {
		err = p.f.cursors.Put(ctx, redoBucket, p.redoKey(), b)
	}
	if err != nil {
		p.f.log.Error("upstream: resend not saved; a restart before it completes may lose records below the stream's last",
			"topic", p.key.topic, "partition", p.key.part, "from", r.From, "err", err)
		return
	}
	p.redoSaved, p.redoUntil = true, r.To
}

func (p *partition) loadRedo(ctx context.Context) (*redo, error) {
	b, ok, err := p.f.cursors.Get(ctx, redoBucket, p.redoKey())
	if err != nil {
		return nil, fmt.Errorf("upstream: read saved resend: %w", err)
	}
	if !ok {
		return nil, nil
	}
	var r redo
	if err := json.Unmarshal(b, &r); err != nil || r.V != 1 || r.From < 0 || r.To < r.From {
		// Refusing to start would stop forwarding for good; resuming from
		// the stream is what the node did before resends were saved.
		p.f.log.Error("upstream: saved resend unreadable; ignoring it", "topic", p.key.topic, "partition", p.key.part, "value", string(b), "err", err)
		p.clearRedo(ctx)
		return nil, nil
	}
	return &r, nil
}

func (p *partition) clearRedo(ctx context.Context) {
	if err := p.f.cursors.Delete(ctx, redoBucket, p.redoKey()); err != nil {
		p.f.log.Warn("upstream: saved resend not cleared; a restart will resend again (duplicates are dropped by the window)",
			"topic", p.key.topic, "partition", p.key.part, "err", err)
		return
	}
	p.redoSaved = false
}

// message builds the next message from buf: one record, or in batch mode as
// many as fit (or exactly the next of cuts, when repeating a batch).
func (p *partition) message(buf []log.Record, cuts *[]span, maxPayload int) (*nats.Msg, int, error) {
	cfg := &p.f.cfg
	if cfg.Mode == ModeRecord {
		m, err := p.enc.Msg(toWire(&buf[0]))
		if err != nil {
			return nil, 0, fmt.Errorf("upstream: %w", err)
		}
		return m, 1, nil
	}
	limit := min(cfg.MaxBatchBytes, maxPayload-4096)
	n := 0
	bytes := 0
	cutLast := int64(-1)
	for len(*cuts) > 0 && (*cuts)[0].Last < buf[0].Offset {
		*cuts = (*cuts)[1:]
	}
	if len(*cuts) > 0 && (*cuts)[0].First == buf[0].Offset {
		cutLast = (*cuts)[0].Last
		*cuts = (*cuts)[1:]
	}
	recs := make([]wire.Record, 0, min(len(buf), cfg.MaxBatchRecords))
	for i := range buf {
		if cutLast >= 0 {
			if buf[i].Offset > cutLast {
				break
			}
		} else {
			sz := recordBytes(&buf[i])
			if n >= cfg.MaxBatchRecords || (n > 0 && bytes+sz > limit) {
				break
			}
			bytes += sz
		}
		recs = append(recs, toWire(&buf[i]))
		n++
	}
	m, err := p.enc.BatchMsg(recs)
	if err != nil {
		return nil, 0, fmt.Errorf("upstream: %w", err)
	}
	return m, n, nil
}

func toWire(r *log.Record) wire.Record {
	w := wire.Record{Offset: r.Offset, Timestamp: r.Timestamp, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		w.Headers = make([]wire.Header, len(r.Headers))
		for i, h := range r.Headers {
			w.Headers[i] = wire.Header{Key: h.Key, Value: h.Value}
			if h.Key == wire.RecordHeaderMQTTTopic && w.MQTTTopic == "" {
				w.MQTTTopic = string(h.Value)
			}
		}
	}
	return w
}

// recordBytes estimates a record's size in a batch payload.
func recordBytes(r *log.Record) int {
	n := 32 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 8 + len(h.Key) + len(h.Value)
	}
	return n
}

func headerBytes(h nats.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// lag describes the partition now.
func (p *partition) lag(now time.Time) PartitionLag {
	start, end := p.src.StartOffset(), p.src.EndOffset()
	acked := p.acked.Load()
	l := PartitionLag{Topic: p.key.topic, Partition: p.key.part, StartOffset: start, EndOffset: end, ForwardedOffset: acked}
	from := max(acked, start)
	if acked < 0 {
		if c := p.committed.Load(); c >= 0 {
			from = max(c, start)
		}
	}
	l.LagRecords = max(end-from, 0)
	if s, ok := p.src.(sizer); ok && end > start {
		l.LagBytes = int64(float64(s.Bytes()) * float64(l.LagRecords) / float64(end-start))
	}
	p.mu.Lock()
	l.Error = p.errText
	l.Live = p.live
	cached := p.headOff == from
	ts := p.headTS
	p.mu.Unlock()
	if l.LagRecords > 0 {
		if !cached {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			recs, err := p.src.Read(ctx, from, 1)
			cancel()
			if err == nil && len(recs) > 0 {
				ts = recs[0].Timestamp
				p.mu.Lock()
				p.headOff, p.headTS = from, ts
				p.mu.Unlock()
				cached = true
			}
		}
		if cached && ts > 0 {
			l.OldestUnforwardedAge = max(now.Sub(time.Unix(0, ts)), 0)
		}
	}
	return l
}
