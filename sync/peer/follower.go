package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/internal/backoff"
)

// ErrStaleOwner: the owner announced an epoch lower than one this follower
// already saw from it. Its metadata was lost or restored from an old copy,
// or an old process still runs: the follower does not fetch from it, so its
// replica — possibly the only full copy left — stays as it is
// [PROTOCOL-5.3].
var ErrStaleOwner = errors.New("peer: owner epoch went backwards")

// Follower copies one owner's partitions into a local replica log: fetch
// with its durable end, append at the owner's offsets, fdatasync (the
// replica log's SyncAlways), fetch again — the next fetch is the
// acknowledgement [PROTOCOL-4]. It reconnects with jittered backoff.
type Follower struct {
	cfg    FollowerConfig
	mode   byte   // modeFollow; modeRestore when Restore copies a replica back
	bucket string // where the owner's epoch and histories are kept

	mu        sync.Mutex
	parts     map[partKey]*replicaPart // mu
	connected bool                     // mu
	epoch     uint64                   // mu; the owner's, at the last welcome
}

// replicaPart is one of the owner's partitions as this node copies it.
type replicaPart struct {
	p        *log.Partition
	hist     history // this node's copy of the owner's history
	stalled  string  // why this session stopped copying it; "" copies
	ownerEnd int64
	hw       int64
}

// NewFollower checks cfg; Run replicates.
func NewFollower(cfg FollowerConfig) (*Follower, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !ValidName(cfg.Owner) || cfg.Owner == cfg.Node {
		return nil, fmt.Errorf("peer: owner name %q: want 1–64 of [A-Za-z0-9_-], not this node's", cfg.Owner)
	}
	if cfg.Log == nil || cfg.Address == "" {
		return nil, errors.New("peer: follower needs a replica log and the owner's address")
	}
	return &Follower{cfg: cfg, mode: modeFollow, bucket: replicaBucket(cfg.Owner), parts: map[partKey]*replicaPart{}}, nil
}

// Status describes one replica partition.
type Status struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	End       int64  `json:"end_offset"`
	OwnerEnd  int64  `json:"owner_end_offset"`
	HW        int64  `json:"high_watermark"`
	Stalled   string `json:"stalled,omitempty"`
}

// Status returns the replica partitions known from the last welcome.
func (f *Follower) Status() []Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Status, 0, len(f.parts))
	for k, rp := range f.parts {
		out = append(out, Status{Topic: k.topic, Partition: k.partition, End: rp.p.EndOffset(), OwnerEnd: rp.ownerEnd, HW: rp.hw, Stalled: rp.stalled})
	}
	return out
}

// Connected reports whether the link to the owner is up.
func (f *Follower) Connected() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connected
}

// Run replicates until ctx ends; it returns nil then. Failures of the link
// or the owner are logged and retried with jittered backoff; a stale owner
// (ErrStaleOwner) is retried too, slowly, since an operator may fix it.
func (f *Follower) Run(ctx context.Context) error {
	b := backoff.Backoff{Min: f.cfg.ReconnectMin, Max: f.cfg.ReconnectMax}
	attempt := 0
	for ctx.Err() == nil {
		progressed, err := f.session(ctx)
		f.setConnected(false)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			attempt = 0
		}
		level := f.cfg.Logger.Info
		d, operator := retryDelay(err, b.Delay(attempt), f.cfg.ReconnectMax)
		attempt++
		if operator {
			level = f.cfg.Logger.Error
		}
		level("peer: replication from owner interrupted; retrying", "owner", f.cfg.Owner, "address", f.cfg.Address, "err", err, "retry_in", d)
		backoff.Sleep(ctx, d)
	}
	return nil
}

// retryDelay is how long Run waits after a session ended with err, given
// the backoff's delay d; operator says the error needs an operator (a
// wrong secret or version, a stale owner): those wait at least 10 ×
// ReconnectMax, so that they are retried without filling the log.
func retryDelay(err error, d, reconnectMax time.Duration) (time.Duration, bool) {
	if errors.Is(err, ErrStaleOwner) || errors.Is(err, ErrAuth) || errors.Is(err, ErrVersion) {
		return max(d, 10*reconnectMax), true
	}
	return d, false
}

func (f *Follower) setConnected(v bool) {
	f.mu.Lock()
	f.connected = v
	f.mu.Unlock()
	g := 0.0
	if v {
		g = 1
	}
	f.cfg.Metrics.connected.WithLabelValues(f.cfg.Owner, "follower").Set(g)
}

// session is one connection: handshake, then fetch until an error.
// progressed says whether it got past the handshake (backoff restarts).
func (f *Follower) session(ctx context.Context) (progressed bool, err error) {
	d := net.Dialer{Timeout: f.cfg.IOTimeout}
	c, err := d.DialContext(ctx, "tcp", f.cfg.Address)
	if err != nil {
		return false, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if f.cfg.TLS != nil {
		tc := tls.Client(c, f.cfg.TLS)
		c.SetDeadline(time.Now().Add(f.cfg.IOTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			f.cfg.Metrics.connects.WithLabelValues(f.cfg.Owner, "follower", "tls").Inc()
			return false, fmt.Errorf("peer: TLS to %s: %w", f.cfg.Address, err)
		}
		c = tc
	}
	fr := newFrameReader(c)
	w, err := f.handshake(ctx, c, fr)
	if err != nil {
		return false, err
	}
	if err := f.setup(ctx, w); err != nil {
		return true, err
	}
	if f.mode == modeFollow {
		f.setConnected(true)
		f.cfg.Logger.Info("peer: replicating from owner", "owner", f.cfg.Owner, "epoch", w.Epoch, "topics", len(w.Topics))
	}
	var out []byte
	for {
		req := f.nextFetch(w.Epoch)
		if len(req.Parts) == 0 {
			return true, errors.New("peer: every replica partition is stalled; see the log for why")
		}
		if f.mode == modeRestore && len(req.Parts) < len(f.parts) {
			return true, errors.New("peer: a partition cannot be restored from this replica; see the log for why")
		}
		if out, err = appendFrame(out[:0], req); err != nil {
			return true, err
		}
		c.SetWriteDeadline(time.Now().Add(f.cfg.IOTimeout))
		if _, err := c.Write(out); err != nil {
			return true, err
		}
		c.SetReadDeadline(time.Now().Add(f.cfg.IOTimeout + f.cfg.MaxWait))
		msg, err := fr.read()
		if err != nil {
			return true, err
		}
		resp, ok := msg.(*fetchResp)
		if !ok || resp.Epoch != w.Epoch {
			return true, fmt.Errorf("%w: expected a fetch response of epoch %d", ErrProtocol, w.Epoch)
		}
		if err := f.apply(ctx, resp); err != nil {
			return true, err
		}
		if f.mode == modeRestore && f.complete(resp) {
			return true, errRestored
		}
		fr.shrink()
	}
}

// errRestored ends a restore session once every partition is copied.
var errRestored = errors.New("peer: restored")

// complete reports whether every partition of the response was copied to
// the replica's end (a restore is done: the replica does not grow while
// its owner is down).
func (f *Follower) complete(resp *fetchResp) bool {
	for i := range resp.Parts {
		part := &resp.Parts[i]
		f.mu.Lock()
		rp := f.parts[partKey{part.Topic, int32(part.Partition)}]
		f.mu.Unlock()
		if part.Status != statusOK || rp == nil || rp.p.EndOffset() < part.End {
			return false
		}
	}
	return true
}

// handshake answers the challenge and checks the welcome [PROTOCOL-3],
// then fences a stale owner [PROTOCOL-5.3].
func (f *Follower) handshake(ctx context.Context, c net.Conn, fr *frameReader) (*welcome, error) {
	c.SetDeadline(time.Now().Add(f.cfg.IOTimeout))
	defer c.SetDeadline(time.Time{})
	m := f.cfg.Metrics
	msg, err := fr.read()
	if err != nil {
		return nil, err
	}
	ch, ok := msg.(*challenge)
	if !ok {
		return nil, fmt.Errorf("%w: expected a challenge", ErrProtocol)
	}
	if ch.Version != Version {
		m.connects.WithLabelValues(f.cfg.Owner, "follower", "version").Inc()
		return nil, fmt.Errorf("%w: owner %s speaks %d, we speak %d", ErrVersion, f.cfg.Owner, ch.Version, Version)
	}
	h := hello{Version: Version, Site: f.cfg.Site, Follower: f.cfg.Node, Nonce: newNonce(), Mode: f.mode}
	h.MAC = helloMAC(f.cfg.Secret, ch.Nonce, h.Site, h.Follower, h.Mode)
	if err := writeMsg(c, &h); err != nil {
		return nil, err
	}
	msg, err = fr.read()
	if errors.Is(err, ErrRemote) {
		m.connects.WithLabelValues(f.cfg.Owner, "follower", "error").Inc()
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	w, ok := msg.(*welcome)
	if !ok {
		return nil, fmt.Errorf("%w: expected a welcome", ErrProtocol)
	}
	if w.Owner != f.cfg.Owner || !macEqual(w.MAC, welcomeMAC(f.cfg.Secret, h.Nonce, w.Owner, w.Epoch)) {
		m.connects.WithLabelValues(f.cfg.Owner, "follower", "auth").Inc()
		return nil, fmt.Errorf("%w: %s answered as %q without proof of the site secret (is the address right?)", ErrAuth, f.cfg.Address, w.Owner)
	}
	if f.mode == modeRestore {
		// The restoring node has no epoch of its own yet; Restore stores
		// the replica's once every record is copied.
		m.connects.WithLabelValues(f.cfg.Owner, "follower", "ok").Inc()
		return w, nil
	}
	seen, err := loadEpoch(ctx, f.cfg.Store, f.bucket)
	if err != nil {
		return nil, fmt.Errorf("peer: load owner epoch: %w", err)
	}
	if w.Epoch < seen {
		m.connects.WithLabelValues(f.cfg.Owner, "follower", "epoch").Inc()
		return nil, fmt.Errorf("%w: owner %s is at epoch %d, this replica already saw epoch %d: its metadata (meta.db) was lost or replaced; this node keeps its replica untouched — restore the owner's data before it takes publishes again", ErrStaleOwner, f.cfg.Owner, w.Epoch, seen)
	}
	if w.Epoch > seen {
		if err := storeEpoch(ctx, f.cfg.Store, f.bucket, w.Epoch); err != nil {
			return nil, fmt.Errorf("peer: store owner epoch: %w", err)
		}
	}
	m.connects.WithLabelValues(f.cfg.Owner, "follower", "ok").Inc()
	return w, nil
}

// setup creates the replica topics the welcome lists and loads this
// node's copy of each partition's history. Stalls are per session: the
// owner decides again on every new connection.
func (f *Follower) setup(ctx context.Context, w *welcome) error {
	parts := map[partKey]*replicaPart{}
	for _, t := range w.Topics {
		if !log.ValidTopicName(t.Name) || t.Partitions == 0 || t.Partitions > 1<<16 {
			return fmt.Errorf("%w: owner lists topic %q with %d partitions", ErrProtocol, t.Name, t.Partitions)
		}
		tc := f.cfg.Retention
		tc.Partitions = int32(t.Partitions)
		if have, err := f.cfg.Log.TopicConfig(t.Name); err == nil && f.mode == modeRestore {
			// Restoring into the node's own log: its topics keep the
			// retention the node gave them.
			if have.Partitions != tc.Partitions {
				return fmt.Errorf("peer: restore: %w: %s has %d partitions here, %d in the replica", log.ErrTopicExists, t.Name, have.Partitions, tc.Partitions)
			}
		} else if err := f.cfg.Log.CreateTopic(t.Name, tc); err != nil {
			return fmt.Errorf("peer: replica of %s: %w", f.cfg.Owner, err)
		}
		for i := range int32(t.Partitions) {
			p, err := f.cfg.Log.Partition(t.Name, i)
			if err != nil {
				return fmt.Errorf("peer: %w", err)
			}
			h, err := loadHistory(ctx, f.cfg.Store, f.bucket, t.Name, i)
			if err != nil {
				return err
			}
			parts[partKey{t.Name, i}] = &replicaPart{p: p, hist: h}
		}
	}
	f.mu.Lock()
	f.parts = parts
	f.epoch = w.Epoch
	f.mu.Unlock()
	return nil
}

// nextFetch asks for every partition not stalled, from its durable end.
func (f *Follower) nextFetch(epoch uint64) *fetch {
	req := &fetch{Epoch: epoch, MaxBytes: clampU32(f.cfg.MaxFetchBytes), MaxWaitMs: uint32(f.cfg.MaxWait / time.Millisecond)}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, rp := range f.parts {
		if rp.stalled != "" {
			continue
		}
		end := rp.p.EndOffset()
		req.Parts = append(req.Parts, fetchPart{Topic: k.topic, Partition: uint32(k.partition), Offset: end, LastEpoch: rp.hist.epochAt(end - 1)})
	}
	return req
}

// apply writes one response: per partition, the owner's history first (so
// that the epoch of every record held is known after a crash), then the
// records at the owner's offsets, durably.
func (f *Follower) apply(ctx context.Context, resp *fetchResp) error {
	// The partitions of a response are appended concurrently: on a
	// journaled replica log (edge/log Config.Journal) one commit, one
	// fdatasync, then covers the whole response, where appending them one
	// at a time made each wait for a commit of its own (up to the commit
	// window each: measured 4–6× slower under acks: all).
	var wg sync.WaitGroup
	defer wg.Wait()
	errs := make([]error, len(resp.Parts))
	for i := range resp.Parts {
		part := &resp.Parts[i]
		k := partKey{part.Topic, int32(part.Partition)}
		f.mu.Lock()
		rp := f.parts[k]
		f.mu.Unlock()
		if rp == nil {
			return fmt.Errorf("%w: response for unknown partition %s/%d", ErrProtocol, part.Topic, part.Partition)
		}
		if reason := stallReason(part, rp.p.EndOffset()); reason != "" {
			f.stall(k, rp, reason)
			continue
		}
		wg.Go(func() { errs[i] = f.applyOne(ctx, k, rp, part) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// applyOne appends one partition of a response and notes its ends.
func (f *Follower) applyOne(ctx context.Context, k partKey, rp *replicaPart, part *respPart) error {
	if err := f.applyPart(ctx, k, rp, part); err != nil {
		return err
	}
	end := rp.p.EndOffset()
	f.mu.Lock()
	rp.ownerEnd, rp.hw = part.End, part.HW
	f.mu.Unlock()
	labels := []string{f.cfg.Owner, k.topic, partLabel(k.partition)}
	m := f.cfg.Metrics
	m.followerEnd.WithLabelValues(labels...).Set(float64(end))
	m.followerLag.WithLabelValues(labels...).Set(float64(max(0, part.End-end)))
	return nil
}

// stallReason says why a partition cannot be copied on, or "".
func stallReason(part *respPart, end int64) string {
	switch part.Status {
	case statusOK:
		return ""
	case statusTruncate:
		// TODO(issue 14): cut the replica at TruncateTo (edge/log has no
		// truncation yet). Until then the replica keeps its records and
		// stops: nothing is lost, the partition is not replicated on.
		return fmt.Sprintf("diverged: the owner's epoch history ends this replica's last epoch at offset %d, the replica ends at %d; truncation is not implemented yet — the replica is kept as it is", part.TruncateTo, end)
	case statusOutOfRange:
		return fmt.Sprintf("the replica ends at %d, outside the owner's [%d, %d] (retention deleted what it needs, or the owner lost records)", end, part.Start, part.End)
	case statusUnknownEpoch:
		return "the owner's epoch history cannot place this replica's last records: the owner lost its metadata; the replica is kept as it is — restore the owner from it"
	}
	return fmt.Sprintf("unknown status %d", part.Status)
}

func (f *Follower) stall(k partKey, rp *replicaPart, reason string) {
	f.mu.Lock()
	already := rp.stalled != ""
	rp.stalled = reason
	n := 0
	for _, o := range f.parts {
		if o.stalled != "" {
			n++
		}
	}
	f.mu.Unlock()
	f.cfg.Metrics.stalled.WithLabelValues(f.cfg.Owner).Set(float64(n))
	if !already {
		f.cfg.Logger.Error("peer: replica partition stopped", "owner", f.cfg.Owner, "topic", k.topic, "partition", k.partition, "reason", reason)
	}
}

func (f *Follower) applyPart(ctx context.Context, k partKey, rp *replicaPart, part *respPart) error {
	h := history(part.History)
	if err := h.validate(); err != nil {
		return err
	}
	if !h.equal(rp.hist) {
		if err := storeHistory(ctx, f.cfg.Store, f.bucket, k.topic, k.partition, h); err != nil {
			return fmt.Errorf("peer: store %s/%d epoch history: %w", k.topic, k.partition, err)
		}
		f.mu.Lock()
		rp.hist = slicesClone(h)
		f.mu.Unlock()
	}
	if len(part.Batches) == 0 {
		return nil
	}
	bs := make([]log.RawBatch, len(part.Batches))
	next := part.Base
	for i, payload := range part.Batches {
		b, err := log.ParseBatch(payload)
		if err == nil && b.Base() != next {
			err = fmt.Errorf("it starts at offset %d, not %d", b.Base(), next)
		}
		if err != nil {
			return fmt.Errorf("%w: batch %d of %s/%d: %v", ErrProtocol, i, k.topic, k.partition, err)
		}
		bs[i], next = b, b.End()
	}
	// The append is not cancelled with the session: an abandoned append
	// could land after the next fetch asked from the old end (AppendAt).
	if err := appendBatches(context.WithoutCancel(ctx), rp.p, part.Base, bs); err != nil {
		return fmt.Errorf("peer: replica %s/%d: %w", k.topic, k.partition, err)
	}
	f.cfg.Metrics.fetchedRecords.WithLabelValues(f.cfg.Owner).Add(float64(next - part.Base))
	return nil
}

// appendBatches stores the owner's batches as they came; when one exceeds
// the replica log's batch limit (the owner's is larger), it copies their
// records instead.
func appendBatches(ctx context.Context, p *log.Partition, base int64, bs []log.RawBatch) error {
	err := p.AppendBatchesAt(ctx, base, bs)
	if !errors.Is(err, log.ErrBatchTooLarge) {
		return err
	}
	var recs []log.Record
	for _, b := range bs {
		r, err := b.Records()
		if err != nil {
			return err
		}
		recs = append(recs, r...)
	}
	return appendAt(ctx, p, base, recs)
}

func slicesClone(h history) history { return append(history(nil), h...) }

// appendAt appends recs at base, in halves when the replica log's batch
// limit (a quarter of its segment size, at most 4 MiB) is below what the
// owner sent in one response.
func appendAt(ctx context.Context, p *log.Partition, base int64, recs []log.Record) error {
	err := p.AppendAt(ctx, base, recs)
	if errors.Is(err, log.ErrBatchTooLarge) && len(recs) > 1 {
		h := len(recs) / 2
		if err := appendAt(ctx, p, base, recs[:h]); err != nil {
			return err
		}
		return appendAt(ctx, p, base+int64(h), recs[h:])
	}
	return err
}
