package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/netaddr"
)

// source is what the forwarder needs of one log partition; *log.Partition
// satisfies it.
type source interface {
	Read(ctx context.Context, from int64, maxBytes int) ([]log.Record, error)
	// Notify returns a channel closed once a record at offset is readable
	// or the source closes.
	Notify(offset int64) <-chan struct{}
	StartOffset() int64
	EndOffset() int64
}

// holder is an optional extra of a source: a retention hold named after
// the cursor, kept at the first offset not yet acknowledged by the stream
// (edge/log's Partition.Hold).
type holder interface {
	Hold(name string) (*log.Hold, error)
}

// sizer is an optional extra of a source: its bytes on disk, for the lag in
// bytes estimate.
type sizer interface{ Bytes() int64 }

// lister finds the partitions to forward; *log.Log satisfies it through
// logLister.
type lister interface {
	partitions() []partKey
	open(topic string, partition int32) (source, error)
}

type logLister struct{ l *log.Log }

func (ll logLister) partitions() []partKey {
	var out []partKey
	for _, t := range ll.l.Topics() {
		for _, p := range t.Partitions {
			out = append(out, partKey{t.Name, p.Partition})
		}
	}
	return out
}

func (ll logLister) open(topic string, partition int32) (source, error) {
	return ll.l.Partition(topic, partition)
}

// cursorStore keeps the forwarding cursor, and the resends armed but not
// yet done (in a small key/value bucket); *meta.Store satisfies it.
type cursorStore interface {
	SetCursor(ctx context.Context, name, topic string, partition int32, offset int64) error
	Cursor(ctx context.Context, name, topic string, partition int32) (int64, bool, error)
	Put(ctx context.Context, bucket, key string, value []byte) error
	Get(ctx context.Context, bucket, key string) ([]byte, bool, error)
	Delete(ctx context.Context, bucket, key string) error
}

type partKey struct {
	topic string
	part  int32
}

// partitionScanInterval is how often the forwarder looks for topics created
// after it started.
const partitionScanInterval = time.Second

// maxInflightBytes bounds the message bytes one partition has published
// and not yet seen acknowledged (nats.go keeps each pending message until
// its ack): with batches of up to MaxBatchBytes, a window counted only in
// messages could hold hundreds of MiB on a 512 MB Pi.
const maxInflightBytes = 4 << 20

// Forwarder drains every partition of a log to JetStream. Create it with
// New, run it with Run.
type Forwarder struct {
	cfg     Config
	log     *slog.Logger
	src     lister
	cursors cursorStore
	m       *metrics
	sched   *scheduler

	link    atomic.Pointer[link] // nil while no connection object exists
	changed broadcaster          // broadcast on every connection state change
	running atomic.Bool

	// lastPerm is when the server last reported a permissions violation
	// (Unix nanoseconds): publishes the server refuses for permissions are
	// dropped, so the future only times out, and this tells such timeouts
	// apart.
	lastPerm atomic.Int64

	connMu    sync.Mutex
	connState string // last logged connection state, to log once per change

	mu    sync.Mutex
	parts map[partKey]*partition
}

// link is one NATS connection and its JetStream handle.
type link struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	gate *gate // every connection nc makes is dialled through it
}

// epoch changes whenever nats.go dials; a window of publishes belongs to
// one epoch (see gate).
func (l *link) epoch() uint64 { return l.gate.current() }

func (l *link) up() bool { return l.nc.Status() == nats.CONNECTED }

// New returns a Forwarder for lg's partitions, keeping its cursors in
// cursors (an *meta.Store). It starts nothing; Run does.
func New(cfg Config, lg *log.Log, cursors cursorStore) (*Forwarder, error) {
	if lg == nil {
		return nil, errors.New("upstream: New: log is nil")
	}
	return newForwarder(cfg, logLister{lg}, cursors)
}

func newForwarder(cfg Config, src lister, cursors cursorStore) (*Forwarder, error) {
	if cursors == nil {
		return nil, errors.New("upstream: New: cursor store is nil")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f := &Forwarder{
		cfg:     cfg,
		log:     lg.With("component", "upstream"),
		src:     src,
		cursors: cursors,
		sched:   newScheduler(cfg.BandwidthBytesPerSec, cfg.MaxInflightBytes),
		parts:   make(map[partKey]*partition),
		changed: newBroadcaster(),
	}
	m, err := newMetrics(f, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	f.m = m
	return f, nil
}

// Run forwards until ctx ends, then commits the cursors and closes the
// connection. It survives every upstream failure (server down, wrong
// credentials, missing or full streams, permissions): those pause
// forwarding, are logged once per change and counted, and forwarding resumes
// when they are fixed. It returns nil when ctx ends, or an error if Run is
// already running.
func (f *Forwarder) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("upstream: Run: already running")
	}
	defer f.running.Store(false)
	f.log.Info("upstream: forwarding", "url", netaddr.RedactURL(f.cfg.URL), "site", f.cfg.Site, "node", f.cfg.Node,
		"mode", f.cfg.Mode.String(), "window", f.cfg.Window, "bandwidth_bytes_per_sec", f.cfg.BandwidthBytesPerSec)

	var conns, loops sync.WaitGroup
	conns.Go(func() { f.connectLoop(ctx) })
	loops.Go(func() { f.scanLoop(ctx, &loops) })
	loops.Go(func() { f.statusLoop(ctx) })
	loops.Go(func() { f.cursorLoop(ctx) })
	<-ctx.Done()
	loops.Wait()
	conns.Wait()
	// Loops are done: commit what they got acknowledged, so a restart does
	// not depend on the stream being reachable to know where it was.
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	f.commitCursors(cctx)
	cancel()
	if ln := f.link.Swap(nil); ln != nil {
		ln.nc.Close()
	}
	f.m.connected.Set(0)
	return nil
}

// Protect returns the lowest offset of the partition not yet acknowledged
// by the stream: where the forwarder's retention hold on the partition
// (edge/log Hold, named after CursorName) stands once Run has resolved it.
// Before that it answers from the cursor store, and 0 (keep everything) if
// that fails.
func (f *Forwarder) Protect(topic string, partition int32) int64 {
	f.mu.Lock()
	p := f.parts[partKey{topic, partition}]
	f.mu.Unlock()
	if p != nil {
		if a := p.acked.Load(); a >= 0 {
			return a
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	off, ok, err := f.cursors.Cursor(ctx, f.cfg.CursorName, topic, partition)
	if err != nil || !ok {
		return 0
	}
	return off
}

// PartitionLag is one partition's forwarding state at one moment.
type PartitionLag struct {
	Topic     string
	Partition int32
	// StartOffset and EndOffset are the log's readable range.
	StartOffset, EndOffset int64
	// ForwardedOffset is the next offset to forward: every record below it
	// is acknowledged by the stream. -1 until the partition has resolved
	// where to resume (then the cursor store's value is not known here).
	ForwardedOffset int64
	// LagRecords is EndOffset - max(ForwardedOffset, StartOffset).
	LagRecords int64
	// LagBytes estimates the log bytes of those records.
	LagBytes int64
	// OldestUnforwardedAge is how old the record at ForwardedOffset is, by
	// its timestamp; 0 when nothing waits.
	OldestUnforwardedAge time.Duration
	// Live tells whether the partition counts as caught up (scheduled first).
	Live bool
	// Error says why forwarding is paused, "" while it runs.
	Error string
}

// Lag returns every known partition's forwarding state, sorted by topic and
// partition. It reads at most one record per lagging partition (for the
// oldest record's age).
func (f *Forwarder) Lag() []PartitionLag {
	f.mu.Lock()
	ps := make([]*partition, 0, len(f.parts))
	for _, p := range f.parts {
		ps = append(ps, p)
	}
	f.mu.Unlock()
	sortPartitions(ps)
	out := make([]PartitionLag, 0, len(ps))
	now := time.Now()
	for _, p := range ps {
		out = append(out, p.lag(now))
	}
	return out
}

// connectLoop keeps a connection object alive. nats.go reconnects by
// itself forever; a new object is made only if one gets closed anyway (or
// Connect refuses the options, e.g. an unreadable credentials file).
func (f *Forwarder) connectLoop(ctx context.Context) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		closed := make(chan struct{})
		g := newGate(f.dialTimeout())
		nc, err := nats.Connect(f.cfg.URL, append(f.natsOptions(closed), nats.SetCustomDialer(g))...)
		if err != nil {
			f.m.connectErrors.WithLabelValues("other").Inc()
			f.setConnState("connect failed", "err", err, "advice", "check url, creds_file and tls settings")
			sleepCtx(ctx, f.backoff(attempt))
			continue
		}
		js, err := jetstream.New(nc,
			jetstream.WithPublishAsyncTimeout(f.cfg.AckTimeout),
			// Each partition bounds its own window; this only has to stay out
			// of their way.
			jetstream.WithPublishAsyncMaxPending(1<<20))
		if err != nil {
			nc.Close()
			f.setConnState("connect failed", "err", err)
			sleepCtx(ctx, f.backoff(attempt))
			continue
		}
		f.link.Store(&link{nc: nc, js: js, gate: g})
		f.changed.broadcast()
		tick := time.NewTicker(time.Second)
	wait:
		for {
			select {
			case <-ctx.Done():
				tick.Stop()
				return // Run closes the connection after the loops stopped
			case <-closed:
				break wait
			case <-tick.C:
				f.noteHandshakeError(nc)
			}
		}
		tick.Stop()
		f.link.Store(nil)
		f.changed.broadcast()
		f.m.connected.Set(0)
		sleepCtx(ctx, f.backoff(attempt))
	}
}

func (f *Forwarder) natsOptions(closed chan struct{}) []nats.Option {
	opts := []nats.Option{
		nats.Name(fmt.Sprintf("outpost-upstream %s/%s", f.cfg.Site, f.cfg.Node)),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.IgnoreAuthErrorAbort(), // wrong credentials get fixed server-side; keep trying
		nats.CustomReconnectDelay(func(attempts int) time.Duration { return f.backoff(attempts) }),
		// No reconnect buffer: a publish while disconnected fails at once
		// instead of going out on the next connection behind records lost
		// with the old one (which would leave a hole the stream's last
		// offset cannot show).
		nats.ReconnectBufSize(-1),
		nats.Timeout(f.dialTimeout()),
		nats.PingInterval(20 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.ConnectHandler(func(nc *nats.Conn) { f.onConnect(nc, false) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { f.onConnect(nc, true) }),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			f.m.connected.Set(0)
			f.changed.broadcast()
			if err == nil && nc.IsClosed() {
				return // our own Close at shutdown, not a lost uplink
			}
			f.setConnState("disconnected", "err", err, "advice", advice(kindDisconnected))
		}),
		nats.ReconnectErrHandler(func(nc *nats.Conn, err error) {
			if errors.Is(err, errDialBusy) {
				f.m.dialsDeferred.Inc()
				return
			}
			f.m.connectErrors.WithLabelValues(connectErrKind(err)).Inc()
			f.setConnState("connect failed: "+err.Error(), "err", err, "advice", connectAdvice(err))
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			state := "server error: " + err.Error()
			if errors.Is(err, nats.ErrPermissionViolation) {
				f.lastPerm.Store(time.Now().UnixNano())
				// One line per change, not one per refused subject.
				state = "server error: permissions violation"
			}
			f.setConnState(state, "err", err, "advice", connectAdvice(err))
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	}
	if f.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(f.cfg.CredsFile))
	}
	if f.cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(f.cfg.TLS.CAFile))
	}
	if f.cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(f.cfg.TLS.CertFile, f.cfg.TLS.KeyFile))
	}
	return opts
}

func (f *Forwarder) dialTimeout() time.Duration { return max(2*time.Second, f.cfg.AckTimeout) }

func connectErrKind(err error) string {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return "auth"
	}
	return "other"
}

func connectAdvice(err error) string {
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked):
		return "the server refused the credentials: check creds_file (or the TLS client certificate) against the server's accounts"
	case errors.Is(err, nats.ErrPermissionViolation):
		return "the NATS user lacks a permission; records wait at the edge until it is granted"
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) || strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:") {
		return "TLS failed: check tls.ca_file against the server's certificate, and tls.cert_file/key_file against the CA the server trusts; retrying with backoff"
	}
	return "retrying with backoff"
}

func (f *Forwarder) onConnect(nc *nats.Conn, re bool) {
	if re {
		f.m.reconnects.Inc()
	}
	f.m.connected.Set(1)
	f.changed.broadcast()
	f.setConnState("connected", "server", nc.ConnectedUrlRedacted())
	// A fresh report right away, so core sees the node as soon as it is back.
	f.publishStatus()
}

// setConnState logs a connection state once per change: a thousand failed
// reconnects with the same error make one line.
func (f *Forwarder) setConnState(state string, attrs ...any) {
	f.connMu.Lock()
	same := f.connState == state
	f.connState = state
	f.connMu.Unlock()
	if same {
		return
	}
	if state == "connected" {
		f.log.Info("upstream: connected", attrs...)
		return
	}
	f.log.Warn("upstream: "+state, attrs...)
}

// noteHandshakeError reports a failed reconnect that nats.go tells no
// handler about: a dial that succeeds followed by a failed TLS handshake or
// INFO/CONNECT exchange (a server certificate the node does not trust after
// a rotation) only lands in nc.LastError, and the log would otherwise say
// nothing but "disconnected: EOF". Refused logins come through the error
// handler already.
func (f *Forwarder) noteHandshakeError(nc *nats.Conn) {
	if nc.Status() == nats.CONNECTED {
		return
	}
	err := nc.LastError()
	if err == nil || connectErrKind(err) == "auth" || errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	state := "connect failed: " + err.Error()
	f.connMu.Lock()
	same := f.connState == state
	f.connMu.Unlock()
	if same {
		return
	}
	f.m.connectErrors.WithLabelValues("other").Inc()
	f.setConnState(state, "err", err, "advice", connectAdvice(err))
}

// currentLink returns the link if it is connected.
func (f *Forwarder) currentLink() *link {
	ln := f.link.Load()
	if ln == nil || !ln.up() {
		return nil
	}
	return ln
}

// waitLink blocks until the uplink is connected or ctx ends.
func (f *Forwarder) waitLink(ctx context.Context) (*link, error) {
	for {
		ch := f.changed.wait()
		if ln := f.currentLink(); ln != nil {
			return ln, nil
		}
		// The state callbacks run asynchronously; a periodic recheck keeps a
		// missed broadcast from stalling a partition.
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// backoff returns the wait before retry number attempt (0-based):
// exponential from ReconnectMin to ReconnectMax with full jitter, so sites
// that lost the link at the same moment do not come back in step.
func (f *Forwarder) backoff(attempt int) time.Duration {
	ceil := f.cfg.ReconnectMin
	for i := 0; i < attempt && ceil < f.cfg.ReconnectMax; i++ {
		ceil *= 2
	}
	ceil = min(ceil, f.cfg.ReconnectMax)
	return time.Millisecond + rand.N(ceil)
}

func (f *Forwarder) scanLoop(ctx context.Context, wg *sync.WaitGroup) {
	t := time.NewTicker(partitionScanInterval)
	defer t.Stop()
	for {
		for _, k := range f.src.partitions() {
			f.mu.Lock()
			p := f.parts[k]
			f.mu.Unlock()
			if p == nil {
				src, err := f.src.open(k.topic, k.part)
				if err != nil {
					f.log.Warn("upstream: cannot open partition", "topic", k.topic, "partition", k.part, "err", err)
					continue
				}
				if p, err = newPartition(f, k, src); err != nil {
					// A topic name wire refuses cannot go upstream at all.
					f.log.Error("upstream: partition cannot be forwarded", "topic", k.topic, "partition", k.part, "err", err)
					continue
				}
				p.holdFromCursor(ctx)
				f.mu.Lock()
				f.parts[k] = p
				f.mu.Unlock()
			}
			f.mu.Lock()
			start := !p.running
			p.running = true
			f.mu.Unlock()
			if start {
				wg.Go(func() {
					defer func() {
						f.mu.Lock()
						p.running = false
						f.mu.Unlock()
					}()
					p.run(ctx)
				})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Forwarder) statusLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.StatusInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.publishStatus()
		}
	}
}

// publishStatus sends a wire.Status if connected. Losing one is harmless:
// the next replaces it.
func (f *Forwarder) publishStatus() {
	ln := f.currentLink()
	if ln == nil {
		return
	}
	lags := f.Lag()
	if len(lags) > wire.MaxStatusPartitions {
		lags = lags[:wire.MaxStatusPartitions]
	}
	st := wire.Status{Version: wire.StatusVersion, Site: f.cfg.Site, Node: f.cfg.Node, Time: time.Now().UTC(),
		Partitions: make([]wire.PartitionStatus, 0, len(lags))}
	for _, l := range lags {
		st.Partitions = append(st.Partitions, wire.PartitionStatus{
			Topic: l.Topic, Partition: l.Partition, EndOffset: l.EndOffset,
			ForwardedOffset: max(l.ForwardedOffset, 0), LagRecords: l.LagRecords, LagBytes: l.LagBytes,
			OldestUnforwardedAgeMs: max(l.OldestUnforwardedAge.Milliseconds(), 0), Error: l.Error,
		})
	}
	if err := wire.PublishStatus(ln.nc, f.cfg.Prefix, st); err != nil {
		f.log.Debug("upstream: status report not sent", "err", err)
	}
}

func (f *Forwarder) cursorLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.CursorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.commitCursors(ctx)
		}
	}
}

// commitCursors writes every acknowledged position that moved. The calls
// run concurrently so the store (meta's db.Batch) commits them in one
// transaction and one fsync.
func (f *Forwarder) commitCursors(ctx context.Context) {
	f.mu.Lock()
	ps := make([]*partition, 0, len(f.parts))
	for _, p := range f.parts {
		ps = append(ps, p)
	}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		a := p.acked.Load()
		if a < 0 || a == p.committed.Load() {
			continue
		}
		wg.Go(func() { p.commitCursor(ctx, a) })
	}
	wg.Wait()
}

// broadcaster is a broadcast: wait returns a channel closed by the next
// broadcast.
type broadcaster struct {
	mu *sync.Mutex
	ch *chan struct{}
}

func newBroadcaster() broadcaster {
	ch := make(chan struct{})
	return broadcaster{mu: new(sync.Mutex), ch: &ch}
}

func (s broadcaster) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.ch
}

func (s broadcaster) broadcast() {
	s.mu.Lock()
	close(*s.ch)
	ch := make(chan struct{})
	*s.ch = ch
	s.mu.Unlock()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var (
	_ source = (*log.Partition)(nil)
	_ holder = (*log.Partition)(nil)
)
