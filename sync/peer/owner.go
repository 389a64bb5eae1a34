package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
)

// Owner serves this node's own partitions to its followers [PROTOCOL-4]:
// each follower fetches with its durable end, which is also its
// acknowledgement; the owner moves that follower's retention hold and
// computes each partition's high watermark from the in-sync followers.
type Owner struct {
	cfg   OwnerConfig
	epoch uint64
	parts map[partKey]*ownedPart // fixed at NewOwner
	order []partKey              // parts sorted, for the welcome and the metrics
	acked ackCounters

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // mu
	closed bool                  // mu
	wg     sync.WaitGroup

	hwMu      sync.Mutex
	hwChanged chan struct{} // closed and replaced when a high watermark may have moved
}

type partKey struct {
	topic     string
	partition int32
}

// ownedPart is one of this node's partitions as its followers see it.
type ownedPart struct {
	p     *log.Partition
	hist  history              // this epoch's history, fixed at NewOwner
	holds map[string]*log.Hold // per follower, fixed at NewOwner

	mu       sync.Mutex
	replicas map[string]*replicaState // mu; by follower
	waiters  []waiter                 // mu; acknowledgements held for acks: all (acks.go)
	stopped  bool                     // mu; the owner stopped: no more waiters
}

// replicaState is what the owner knows of one follower's copy.
type replicaState struct {
	end      int64     // the follower's durable end, from its last fetch
	prevEnd  int64     // the owner's end at the follower's previous fetch
	caughtUp time.Time // when a fetch last reached the owner's end as of the fetch before it
}

// NewOwner bumps and persists this node's epoch, records it in every
// partition's epoch history [PROTOCOL-5.1] and takes a retention hold per
// follower. Call it after the log has recovered and before the node
// accepts publishes: records appended from then on belong to the new
// epoch. It starts no goroutines; Run serves.
func NewOwner(ctx context.Context, cfg OwnerConfig) (*Owner, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Log == nil || cfg.Listener == nil {
		return nil, errors.New("peer: owner needs a log and a listener")
	}
	for _, f := range cfg.Followers {
		if !ValidName(f) || f == cfg.Node {
			return nil, fmt.Errorf("peer: follower name %q: want 1–64 of [A-Za-z0-9_-], not this node's", f)
		}
	}
	if cfg.MinInSync == 0 || cfg.MinInSync > len(cfg.Followers) {
		cfg.MinInSync = len(cfg.Followers)
	}
	last, err := loadEpoch(ctx, cfg.Store, ownBucket)
	if err != nil {
		return nil, fmt.Errorf("peer: load epoch: %w", err)
	}
	o := &Owner{cfg: cfg, epoch: last + 1, parts: map[partKey]*ownedPart{}, conns: map[net.Conn]struct{}{}}
	o.acked = ackCounters{
		replicated: cfg.Metrics.acks.WithLabelValues("replicated"),
		degraded:   cfg.Metrics.acks.WithLabelValues("degraded"),
		refused:    cfg.Metrics.acks.WithLabelValues("refused"),
	}
	// The epoch is durable before any record of it is served: a crash
	// after this point starts the next run at epoch+1, never at this one
	// again [PROTOCOL-5.1].
	if err := storeEpoch(ctx, cfg.Store, ownBucket, o.epoch); err != nil {
		return nil, fmt.Errorf("peer: store epoch: %w", err)
	}
	cfg.Metrics.epoch.Set(float64(o.epoch))
	for _, t := range cfg.Log.Topics() {
		for _, pi := range t.Partitions {
			if err := o.addPart(ctx, t.Name, pi.Partition); err != nil {
				return nil, err
			}
		}
	}
	slices.SortFunc(o.order, func(a, b partKey) int {
		if a.topic != b.topic {
			return cmpString(a.topic, b.topic)
		}
		return int(a.partition - b.partition)
	})
	if cfg.MinInSync > 0 {
		// No follower has fetched yet: every partition is under-replicated
		// until one does. The refresher says so within a second of Run, but
		// a reader of the metric must never see "all in sync" before that
		// (TestTakeoverKill published into an owner the gauge called in
		// sync, its acks degraded, and lost the records with it).
		cfg.Metrics.underRep.Set(float64(len(o.parts)))
	}
	return o, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (o *Owner) addPart(ctx context.Context, topic string, id int32) error {
	p, err := o.cfg.Log.Partition(topic, id)
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	h, err := loadHistory(ctx, o.cfg.Store, ownBucket, topic, id)
	if err != nil {
		return fmt.Errorf("peer: %s/%d: %w", topic, id, err)
	}
	h = h.begin(o.epoch, p.EndOffset())
	if err := storeHistory(ctx, o.cfg.Store, ownBucket, topic, id, h); err != nil {
		return fmt.Errorf("peer: %s/%d: store epoch history: %w", topic, id, err)
	}
	op := &ownedPart{p: p, hist: h, holds: map[string]*log.Hold{}, replicas: map[string]*replicaState{}}
	for _, f := range o.cfg.Followers {
		hd, err := p.Hold(HoldName(f))
		if err != nil {
			return fmt.Errorf("peer: %w", err)
		}
		op.holds[f] = hd
	}
	k := partKey{topic, id}
	o.parts[k] = op
	o.order = append(o.order, k)
	return nil
}

// Epoch returns this run's owner epoch.
func (o *Owner) Epoch() uint64 { return o.epoch }

// Addr returns the listener's address.
func (o *Owner) Addr() net.Addr { return o.cfg.Listener.Addr() }

// ReplicaInfo describes one of this node's partitions and its followers
// (the "replication" object of /v1/topics).
type ReplicaInfo struct {
	Topic         string           `json:"-"`
	Partition     int32            `json:"-"`
	End           int64            `json:"-"`
	Replicas      []string         `json:"replicas"` // the configured followers
	HighWatermark int64            `json:"high_watermark"`
	InSync        []string         `json:"in_sync"`
	Ends          map[string]int64 `json:"replica_end_offsets"` // followers that fetched since the owner started
	Lag           map[string]int64 `json:"replica_lag"`         // records each of them lacks
	UnderRep      bool             `json:"under_replicated"`
}

// Replica returns the replica state of one partition this node owns.
func (o *Owner) Replica(topic string, partition int32) (ReplicaInfo, bool) {
	op := o.parts[partKey{topic, partition}]
	if op == nil {
		return ReplicaInfo{}, false
	}
	return op.info(partKey{topic, partition}, o.cfg, time.Now()), true
}

// Replicas returns the replica state of every partition this node owns,
// sorted by topic and partition.
func (o *Owner) Replicas() []ReplicaInfo {
	out := make([]ReplicaInfo, 0, len(o.order))
	now := time.Now()
	for _, k := range o.order {
		out = append(out, o.parts[k].info(k, o.cfg, now))
	}
	return out
}

// info computes the partition's high watermark: the lowest end among the
// owner and the followers in sync (those that reached the owner's end
// within LagMax), as Liftbridge and Kafka do. With no follower in sync the
// high watermark is the owner's end and the partition is under-replicated
// (what acks: all does then is the policy's, acks.go).
func (op *ownedPart) info(k partKey, cfg OwnerConfig, now time.Time) ReplicaInfo {
	op.mu.Lock()
	ri := op.stateLocked(cfg, now)
	op.mu.Unlock()
	ri.Topic, ri.Partition = k.topic, k.partition
	m := cfg.Metrics
	m.hw.WithLabelValues(k.topic, partLabel(k.partition)).Set(float64(ri.HighWatermark))
	m.inSync.WithLabelValues(k.topic, partLabel(k.partition)).Set(float64(len(ri.InSync)))
	return ri
}

// hwLocked is stateLocked's high watermark and under-replication alone,
// built without allocating: Await (every acknowledgement) and every
// fetch use it. op.mu is held.
func (op *ownedPart) hwLocked(cfg OwnerConfig, now time.Time) (hw int64, underRep bool) {
	hw = op.p.EndOffset()
	inSync := 0
	for _, f := range cfg.Followers {
		if st := op.replicas[f]; st != nil && now.Sub(st.caughtUp) < cfg.LagMax {
			inSync++
			hw = min(hw, st.end)
		}
	}
	return hw, inSync < cfg.MinInSync
}

// stateLocked computes the replica state; op.mu is held. Its high
// watermark and UnderRep are hwLocked's.
func (op *ownedPart) stateLocked(cfg OwnerConfig, now time.Time) ReplicaInfo {
	end := op.p.EndOffset()
	ri := ReplicaInfo{End: end, HighWatermark: end, Replicas: cfg.Followers, InSync: []string{}, Ends: map[string]int64{}, Lag: map[string]int64{}}
	for _, f := range cfg.Followers {
		st := op.replicas[f]
		if st == nil {
			continue
		}
		ri.Ends[f] = st.end
		ri.Lag[f] = max(0, end-st.end)
		if now.Sub(st.caughtUp) < cfg.LagMax {
			ri.InSync = append(ri.InSync, f)
			ri.HighWatermark = min(ri.HighWatermark, st.end)
		}
	}
	ri.UnderRep = len(ri.InSync) < cfg.MinInSync
	return ri
}

// Run accepts followers until ctx ends, then closes the listener and every
// connection and waits for their goroutines. It refreshes the replica
// metrics every second, so a follower that went silent leaves the in-sync
// set without fetching.
func (o *Owner) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, o.shutdown)
	defer stop()
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		o.refresh(ctx)
	}()
	var err error
	for {
		var c net.Conn
		c, err = o.cfg.Listener.Accept()
		if err != nil {
			break
		}
		if !o.track(c) {
			c.Close()
			break
		}
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			defer o.untrack(c)
			o.serve(ctx, c)
		}()
	}
	o.shutdown()
	o.wg.Wait()
	o.stopWaiters()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("peer: accept: %w", err)
}

func (o *Owner) refresh(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	// Partitions start in sync as far as the log is concerned: the first
	// tick reports those that are not (no follower has fetched yet).
	was := map[partKey]bool{}
	for {
		under := 0
		var went, back []string // one log line per tick, not one per partition
		for _, ri := range o.Replicas() {
			k := partKey{ri.Topic, ri.Partition}
			if ri.UnderRep {
				under++
			}
			if ri.UnderRep != was[k] {
				name := ri.Topic + "/" + partLabel(ri.Partition)
				if ri.UnderRep {
					went = append(went, name)
				} else {
					back = append(back, name)
				}
				was[k] = ri.UnderRep
			}
		}
		if len(went) > 0 {
			o.cfg.Logger.Warn("peer: partitions under-replicated (fewer followers in sync than min_insync)", "partitions", went,
				"min_insync", o.cfg.MinInSync, "policy", o.cfg.Policy.String())
		}
		if len(back) > 0 {
			o.cfg.Logger.Info("peer: partitions back in sync", "partitions", back)
		}
		o.cfg.Metrics.underRep.Set(float64(under))
		now := time.Now()
		for _, op := range o.parts {
			o.release(op, now)
		}
		// A follower that fell out of sync lifts the high watermark
		// without fetching.
		o.highWatermarkMoved()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (o *Owner) track(c net.Conn) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.conns[c] = struct{}{}
	return true
}

func (o *Owner) untrack(c net.Conn) {
	o.mu.Lock()
	delete(o.conns, c)
	o.mu.Unlock()
	c.Close()
}

func (o *Owner) shutdown() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	o.cfg.Listener.Close()
	for c := range o.conns {
		c.Close()
	}
}

// serve runs one follower's connection: handshake, then fetches until the
// connection fails or the owner stops.
func (o *Owner) serve(ctx context.Context, c net.Conn) {
	logger := o.cfg.Logger.With("remote", c.RemoteAddr().String())
	if o.cfg.TLS != nil {
		tc := tls.Server(c, o.cfg.TLS)
		c.SetDeadline(time.Now().Add(o.cfg.IOTimeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			o.cfg.Metrics.connects.WithLabelValues("unknown", "owner", "tls").Inc()
			logger.Warn("peer: TLS handshake with a follower failed", "err", err)
			return
		}
		c = tc
	}
	fr := newFrameReader(c)
	follower, src, err := o.handshake(ctx, c, fr)
	if err != nil {
		switch {
		case errors.Is(err, errNoReplica):
			logger.Info("peer: no replica of the asking node is kept here", "err", err)
		case !errors.Is(err, io.EOF) && ctx.Err() == nil:
			logger.Warn("peer: refused a follower", "err", err)
		}
		return
	}
	logger = logger.With("follower", follower)
	m := o.cfg.Metrics
	if src.restore {
		logger.Warn("peer: a node is restoring its partitions from the replica kept here", "epoch", src.epoch)
	} else {
		logger.Info("peer: follower connected", "epoch", o.epoch)
		m.connected.WithLabelValues(follower, "owner").Set(1)
		defer m.connected.WithLabelValues(follower, "owner").Set(0)
	}
	var out []byte
	for {
		c.SetReadDeadline(time.Now().Add(o.cfg.IOTimeout + o.cfg.MaxWait))
		msg, err := fr.read()
		if err != nil {
			if ctx.Err() == nil {
				logger.Info("peer: follower disconnected", "err", err)
			}
			return
		}
		f, ok := msg.(*fetch)
		if !ok {
			o.refuse(c, codeBadRequest, fmt.Sprintf("expected a fetch, got message type %d", typeOf(msg)))
			return
		}
		resp, code, err := o.handleFetch(ctx, follower, src, f)
		if err != nil {
			logger.Warn("peer: bad fetch", "err", err)
			o.refuse(c, code, err.Error())
			return
		}
		if out, err = appendFrame(out[:0], resp); err != nil {
			logger.Error("peer: encode fetch response", "err", err)
			return
		}
		if o.cfg.Budget != nil {
			// The follower's next fetch (its acknowledgement) waits as long:
			// under a shared budget acks: all is as slow as the link share.
			if err := o.cfg.Budget.Wait(ctx, len(out)); err != nil {
				return
			}
		}
		c.SetWriteDeadline(time.Now().Add(o.cfg.IOTimeout))
		if _, err := c.Write(out); err != nil {
			logger.Info("peer: follower disconnected", "err", err)
			return
		}
		if cap(out) > 2*o.cfg.MaxFetchBytes {
			out = nil // one oversized record's buffer is not kept
		}
		fr.shrink()
	}
}

// errNoReplica: a restore asked for a replica this node does not keep.
var errNoReplica = errors.New("peer: no replica kept here")

// source is what one conversation serves: this node's own partitions to a
// follower, or the replica this node keeps of the caller's partitions to
// that node restoring itself [PROTOCOL-6].
type source struct {
	name    string // whose partitions: the welcome's owner
	epoch   uint64
	parts   map[partKey]*ownedPart
	topics  []topicInfo
	restore bool // no acknowledgements, holds or in-sync state
}

func (o *Owner) ownSource() *source {
	src := &source{name: o.cfg.Node, epoch: o.epoch, parts: o.parts}
	for _, t := range o.cfg.Log.Topics() {
		src.topics = append(src.topics, topicInfo{Name: t.Name, Partitions: uint32(len(t.Partitions))})
	}
	return src
}

// replicaSource serves the replica of node kept here, with this node's
// copy of node's epoch and histories; nil if there is none.
func (o *Owner) replicaSource(ctx context.Context, node string) (*source, error) {
	rl := o.cfg.Replicas[node]
	if rl == nil {
		return nil, nil
	}
	seen, err := loadEpoch(ctx, o.cfg.Store, replicaBucket(node))
	if err != nil || seen == 0 {
		return nil, err
	}
	src := &source{name: node, epoch: seen, parts: map[partKey]*ownedPart{}, restore: true}
	for _, t := range rl.Topics() {
		src.topics = append(src.topics, topicInfo{Name: t.Name, Partitions: uint32(len(t.Partitions))})
		for _, pi := range t.Partitions {
			p, err := rl.Partition(t.Name, pi.Partition)
			if err != nil {
				return nil, err
			}
			h, err := loadHistory(ctx, o.cfg.Store, replicaBucket(node), t.Name, pi.Partition)
			if err != nil {
				return nil, err
			}
			src.parts[partKey{t.Name, pi.Partition}] = &ownedPart{p: p, hist: h}
		}
	}
	return src, nil
}

// handshake sends the challenge and checks the hello [PROTOCOL-3]; it
// returns the caller's name and what to serve it.
func (o *Owner) handshake(ctx context.Context, c net.Conn, fr *frameReader) (string, *source, error) {
	c.SetDeadline(time.Now().Add(o.cfg.IOTimeout))
	defer c.SetDeadline(time.Time{})
	m := o.cfg.Metrics
	ch := challenge{Version: Version, Nonce: newNonce()}
	if err := writeMsg(c, &ch); err != nil {
		return "", nil, err
	}
	msg, err := fr.read()
	if err != nil {
		return "", nil, err
	}
	h, ok := msg.(*hello)
	if !ok {
		o.refuse(c, codeBadRequest, "expected a hello")
		return "", nil, fmt.Errorf("%w: expected a hello, got type %d", ErrProtocol, typeOf(msg))
	}
	if h.Version != Version {
		m.connects.WithLabelValues(h.Follower, "owner", "version").Inc()
		o.refuse(c, codeVersion, fmt.Sprintf("owner speaks peer protocol %d, follower %d", Version, h.Version))
		return "", nil, fmt.Errorf("%w: follower %q speaks %d, we speak %d", ErrVersion, h.Follower, h.Version, Version)
	}
	known := slices.Contains(o.cfg.Followers, h.Follower)
	if !known || h.Site != o.cfg.Site || !macEqual(h.MAC, helloMAC(o.cfg.Secret, ch.Nonce, h.Site, h.Follower, h.Mode)) {
		m.connects.WithLabelValues("unknown", "owner", "auth").Inc()
		// The follower learns only that it was refused; the reason is in
		// the owner's log, so a prober learns nothing about names.
		o.refuse(c, codeAuth, "authentication failed")
		return "", nil, fmt.Errorf("%w: follower %q of site %q (listed in peers: %v; site and secret must match)", ErrAuth, h.Follower, h.Site, known)
	}
	src := o.ownSource()
	switch h.Mode {
	case modeFollow:
	case modeRestore:
		var err error
		if src, err = o.replicaSource(ctx, h.Follower); err != nil {
			o.refuse(c, codeInternal, "cannot read the replica")
			return "", nil, fmt.Errorf("peer: replica of %s: %w", h.Follower, err)
		}
		if src == nil {
			o.refuse(c, codeNoReplica, fmt.Sprintf("no replica of %s here", h.Follower))
			return "", nil, fmt.Errorf("%w: %s asked for one (its first start)", errNoReplica, h.Follower)
		}
	default:
		o.refuse(c, codeBadRequest, fmt.Sprintf("unknown mode %d", h.Mode))
		return "", nil, fmt.Errorf("%w: unknown hello mode %d", ErrProtocol, h.Mode)
	}
	w := welcome{Owner: src.name, Epoch: src.epoch, MAC: welcomeMAC(o.cfg.Secret, h.Nonce, src.name, src.epoch), Topics: src.topics}
	if err := writeMsg(c, &w); err != nil {
		return "", nil, err
	}
	m.connects.WithLabelValues(h.Follower, "owner", "ok").Inc()
	return h.Follower, src, nil
}

func writeMsg(c net.Conn, m message) error {
	b, err := appendFrame(nil, m)
	if err != nil {
		return err
	}
	_, err = c.Write(b)
	return err
}

// refuse sends an Error and leaves closing to the caller [PROTOCOL-2.3].
func (o *Owner) refuse(c net.Conn, code uint16, msg string) {
	c.SetWriteDeadline(time.Now().Add(o.cfg.IOTimeout))
	_ = writeMsg(c, &errorMsg{Code: code, Message: msg})
}

// handleFetch answers one fetch: it records each partition's follower end
// (its acknowledgement), decides per partition [PROTOCOL-5.2], reads up to
// MaxFetchBytes and, when nothing is new anywhere, waits up to MaxWait for
// a commit on any of the partitions.
func (o *Owner) handleFetch(ctx context.Context, follower string, src *source, f *fetch) (*fetchResp, uint16, error) {
	if f.Epoch != src.epoch {
		return nil, codeEpoch, fmt.Errorf("fetch for epoch %d, owner is at %d", f.Epoch, src.epoch)
	}
	parts := make([]*ownedPart, len(f.Parts))
	now := time.Now()
	acked := false
	for i, fp := range f.Parts {
		op := src.parts[partKey{fp.Topic, int32(fp.Partition)}]
		if op == nil || fp.Partition > 1<<30 {
			if acked {
				o.highWatermarkMoved()
			}
			return nil, codeBadRequest, fmt.Errorf("no partition %s/%d here", fp.Topic, fp.Partition)
		}
		parts[i] = op
		if !src.restore {
			o.ack(op, follower, fp.Offset, now)
			acked = true
		}
	}
	if acked {
		o.highWatermarkMoved() // once per fetch, not per partition
	}
	budget := min(int(f.MaxBytes), o.cfg.MaxFetchBytes)
	wait := min(time.Duration(f.MaxWaitMs)*time.Millisecond, o.cfg.MaxWait)
	resp := &fetchResp{Epoch: src.epoch, Parts: make([]respPart, len(f.Parts))}
	for attempt := 0; ; attempt++ {
		any := false
		used := 0
		for i, fp := range f.Parts {
			rp, n, err := parts[i].answer(ctx, fp, budget-used)
			if err != nil {
				return nil, codeInternal, err
			}
			rp.HW = rp.End
			if !src.restore {
				op := parts[i]
				op.mu.Lock()
				rp.HW, _ = op.hwLocked(o.cfg, now)
				op.mu.Unlock()
			}
			resp.Parts[i] = rp
			used += n
			any = any || n > 0 || rp.Status != statusOK
		}
		if any || attempt > 0 || wait <= 0 {
			break
		}
		o.waitAny(ctx, parts, f.Parts, wait)
	}
	served := 0
	for _, rp := range resp.Parts {
		served += rp.records
	}
	o.cfg.Metrics.servedRecords.WithLabelValues(follower).Add(float64(served))
	return resp, 0, nil
}

// ack records a follower's durable end for the partition: its hold moves
// there (the owner may delete below it) and, if it reached the owner's end
// as of its previous fetch, it is in sync as of now (Kafka's
// lastCaughtUpTime: under steady ingest a follower is never exactly at the
// end, but it is in sync if it has everything that existed when it last
// asked). Acknowledgements the new state decides are released; the caller
// signals HighWatermarkChanged.
func (o *Owner) ack(op *ownedPart, follower string, end int64, now time.Time) {
	op.mu.Lock()
	ownerEnd := op.p.EndOffset()
	st := op.replicas[follower]
	if st == nil {
		// A follower's first fetch counts as caught up only at the end.
		st = &replicaState{prevEnd: ownerEnd}
		op.replicas[follower] = st
	}
	st.end = end
	if end >= st.prevEnd || end >= ownerEnd {
		st.caughtUp = now
	}
	st.prevEnd = ownerEnd
	ws, under := o.releaseLocked(op, now)
	op.mu.Unlock()
	o.complete(ws, under)
	if h := op.holds[follower]; h != nil {
		h.Set(end)
	}
}

// HighWatermark returns the partition's high watermark: every record below
// it is on this node and on every in-sync follower (the owner's end when
// none is in sync). ok is false for a partition this owner does not serve
// (created after it started: nobody replicates it). The forwarder reads
// only below it, so the centre never holds a record the peers lack, and a
// node restored from a peer's replica never reuses an offset the centre
// holds (while a peer was in sync).
func (o *Owner) HighWatermark(topic string, partition int32) (int64, bool) {
	op := o.parts[partKey{topic, partition}]
	if op == nil {
		return 0, false
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	hw, _ := op.hwLocked(o.cfg, time.Now())
	return hw, true
}

// HighWatermarkChanged returns a channel closed when a high watermark may
// have moved: a follower acknowledged, or the in-sync sets were looked at
// again (every second).
func (o *Owner) HighWatermarkChanged() <-chan struct{} {
	o.hwMu.Lock()
	defer o.hwMu.Unlock()
	if o.hwChanged == nil {
		o.hwChanged = make(chan struct{})
	}
	return o.hwChanged
}

func (o *Owner) highWatermarkMoved() {
	o.hwMu.Lock()
	defer o.hwMu.Unlock()
	if o.hwChanged != nil {
		close(o.hwChanged)
		o.hwChanged = nil
	}
}

// answer builds one partition's part of the response; n is the payload
// bytes it added. Batches go as the log stores them, checksums checked,
// records not decoded: decoding and re-encoding every record cost the
// owner more CPU than ingesting it (measured, README "Two Pis"). Only a
// follower ending inside a batch (a replica copied record by record, a
// restore) gets that batch's tail re-encoded.
func (op *ownedPart) answer(ctx context.Context, fp fetchPart, budget int) (respPart, int, error) {
	rp := respPart{Topic: fp.Topic, Partition: fp.Partition, End: op.p.EndOffset(), Start: op.p.StartOffset(), History: op.hist, Base: fp.Offset}
	d, at := decideFetch(op.hist, rp.Start, rp.End, fp.Offset, fp.LastEpoch)
	switch d {
	case truncate:
		rp.Status, rp.TruncateTo = statusTruncate, at
		return rp, 0, nil
	case outOfRange:
		rp.Status = statusOutOfRange
		return rp, 0, nil
	case unknown:
		rp.Status = statusUnknownEpoch
		return rp, 0, nil
	}
	if budget <= 0 || fp.Offset >= rp.End {
		return rp, 0, nil
	}
	bs, err := op.p.ReadBatches(ctx, fp.Offset, budget)
	if errors.Is(err, log.ErrOffsetOutOfRange) {
		rp.Status = statusOutOfRange // deleted by retention meanwhile
		return rp, 0, nil
	}
	if err == nil && len(bs) > 0 && bs[0].Base() != fp.Offset {
		bs[0], err = bs[0].From(fp.Offset)
	}
	if err != nil {
		return rp, 0, fmt.Errorf("read %s/%d at %d: %w", fp.Topic, fp.Partition, fp.Offset, err)
	}
	n := 0
	for _, b := range bs {
		rp.Batches = append(rp.Batches, b.Payload())
		rp.records += b.Count()
		n += len(b.Payload())
	}
	return rp, n, nil
}

// waitAny waits until any partition of the fetch commits past the
// follower's offset, wait passes or ctx ends. The log's Notify channels
// cost no goroutine; reflect.Select waits on a variable number of them.
func (o *Owner) waitAny(ctx context.Context, parts []*ownedPart, fps []fetchPart, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	cases := make([]reflect.SelectCase, 0, len(parts)+2)
	cases = append(cases,
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(t.C)})
	for i, op := range parts {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(op.p.Notify(fps[i].Offset))})
	}
	reflect.Select(cases)
}
