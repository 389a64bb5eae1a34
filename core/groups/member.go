package groups

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// ErrTopicMismatch: the group already reads another topic.
var ErrTopicMismatch = errors.New("groups: the group reads another topic")

// Member is one member of a consumer group. Join makes it; Run takes part
// in the group until its context ends or Close is called (then it leaves
// cleanly: commits, gives its buckets back) or a handler fails.
type Member struct {
	cfg     Config
	id      string
	js      jetstream.JetStream
	kv      jetstream.KeyValue // the group's: members and claims
	pos     jetstream.KeyValue // positions
	stream  jetstream.Stream
	buckets int // of the stream; a stream without buckets is read as 1
	bucketd bool
	session time.Duration
	since   time.Time

	mu      sync.Mutex
	readers map[int]*reader // buckets this member holds, by bucket
	failed  chan error      // a reader's handler error

	// abandon makes Run end as a crash would: readers stop, nothing is
	// committed or given back (tests of a dead member).
	abandon atomic.Bool

	handled, takeovers, unclean atomic.Uint64

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	running   atomic.Bool
	ran       chan struct{} // closed when Run returns
}

// errClosed ends Run on Close.
var errClosed = errors.New("groups: member closed")

// Close leaves the group gracefully, as cancelling Run's context does,
// and waits until Run has returned (if it runs).
func (m *Member) Close() {
	m.closeOnce.Do(func() { close(m.closing) })
	if m.running.Load() {
		<-m.ran
	}
}

// Stats counts what a member did.
type Stats struct {
	// Handled is how many records the handler returned from.
	Handled uint64
	// Takeovers is how many times this member took a bucket.
	Takeovers uint64
	// UncleanTakeovers counts buckets taken from a reader that had not
	// given them back (it died, or lost its claim): what it handled after
	// its last commit was delivered again. At-least-once shows here.
	UncleanTakeovers uint64
}

// Stats returns the member's counts so far.
func (m *Member) Stats() Stats {
	return Stats{Handled: m.handled.Load(), Takeovers: m.takeovers.Load(), UncleanTakeovers: m.unclean.Load()}
}

// Join checks cfg, binds (or creates) the group's state in JetStream and
// returns a member that has not joined yet: Run joins.
func Join(ctx context.Context, js jetstream.JetStream, cfg Config) (*Member, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Member{cfg: cfg, js: js, id: cfg.Member, readers: map[int]*reader{}, failed: make(chan error, 1), since: time.Now().UTC(),
		closing: make(chan struct{}), ran: make(chan struct{})}
	if m.id == "" {
		b := make([]byte, 4)
		rand.Read(b)
		m.id = "m-" + hex.EncodeToString(b)
	}
	var err error
	if m.stream, err = js.Stream(ctx, wire.StreamName(cfg.Prefix, cfg.Topic)); err != nil {
		return nil, fmt.Errorf("groups: stream of topic %q: %w", cfg.Topic, err)
	}
	if n := wire.StreamBuckets(m.stream.CachedInfo().Config); n > 0 {
		m.buckets, m.bucketd = n, true
	} else {
		m.buckets = 1
	}
	if m.kv, m.session, err = openGroupBucket(ctx, js, cfg.Group, cfg.SessionTimeout); err != nil {
		return nil, err
	}
	if m.pos, err = openPositions(ctx, js); err != nil {
		return nil, err
	}
	st, err := readState(ctx, m.kv)
	if err != nil {
		return nil, fmt.Errorf("groups: read group %s: %w", cfg.Group, err)
	}
	for id, v := range st.members {
		if v.Topic != cfg.Topic {
			return nil, fmt.Errorf("%w: member %s of group %s reads %q, not %q", ErrTopicMismatch, id, cfg.Group, v.Topic, cfg.Topic)
		}
	}
	return m, nil
}

// ID is the member's name in the group.
func (m *Member) ID() string { return m.id }

// Buckets is the number of buckets the group shares.
func (m *Member) Buckets() int { return m.buckets }

// Assignment returns the buckets this member reads now.
func (m *Member) Assignment() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.readers))
}

// filter is the subject filter of bucket b.
func (m *Member) filter(b int) string {
	if !m.bucketd {
		return wire.BucketFilter(m.cfg.Prefix, m.cfg.Topic, -1)
	}
	return wire.BucketFilter(m.cfg.Prefix, m.cfg.Topic, b)
}

// Run takes part in the group until ctx ends, then commits what was
// handled, gives its buckets back and leaves; or until a handler fails,
// which it returns after leaving the same way.
func (m *Member) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("groups: Run: already running (a Member runs once)")
	}
	defer close(m.ran)
	tick := time.NewTicker(max(100*time.Millisecond, m.session/4))
	defer tick.Stop()
	commit := time.NewTicker(max(10*time.Millisecond, m.cfg.CommitInterval))
	if m.cfg.CommitInterval < 0 {
		commit.Stop()
	}
	defer commit.Stop()
	// Changes of the group (joins, leaves, releases) are acted on at once.
	changes := make(chan struct{}, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if w, err := m.kv.WatchAll(wctx, jetstream.UpdatesOnly()); err == nil {
		go func() {
			// Heartbeats of known members change nothing: only claims,
			// deletions and new members do. Reacting to every heartbeat
			// would make each member step (read the group) n times per
			// heartbeat period.
			known := map[string]bool{}
			for e := range w.Updates() {
				if e == nil {
					continue
				}
				k := e.Key()
				if e.Operation() == jetstream.KeyValuePut && strings.HasPrefix(k, "m.") {
					if known[k] {
						continue
					}
					known[k] = true
				} else if e.Operation() != jetstream.KeyValuePut {
					delete(known, k)
				}
				select {
				case changes <- struct{}{}:
				default:
				}
			}
		}()
		defer w.Stop()
	}
	m.cfg.Logger.Info("groups: joining", "group", m.cfg.Group, "member", m.id, "topic", m.cfg.Topic, "buckets", m.buckets, "session_timeout", m.session)
	var runErr error
	beat := true
	for runErr == nil {
		if err := m.step(ctx, beat); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("groups: rebalance step failed; retrying", "group", m.cfg.Group, "member", m.id, "err", err)
		}
		beat = false
		select {
		case <-ctx.Done():
			runErr = ctx.Err()
		case <-m.closing:
			runErr = errClosed
		case err := <-m.failed:
			runErr = err
		case <-tick.C:
			beat = true
		case <-changes:
		case <-commit.C:
			m.commitAll(ctx)
		}
	}
	m.leave()
	if errors.Is(runErr, errClosed) || errors.Is(runErr, ctx.Err()) {
		return nil
	}
	return runErr
}

// step is one round: with beat, heartbeat and renew claims (every
// session/4); always read the group and follow the plan.
func (m *Member) step(ctx context.Context, beat bool) error {
	rctx, cancel := context.WithTimeout(ctx, m.session/2)
	defer cancel()
	claim, _ := json.Marshal(claimValue{Member: m.id})
	if beat {
		if err := m.beat(rctx, claim); err != nil {
			return err
		}
	}
	st, err := readState(rctx, m.kv)
	if err != nil {
		return err
	}
	members := make([]string, 0, len(st.members))
	for id := range st.members {
		members = append(members, id)
	}
	slices.Sort(members)
	claims := make(map[int]string, len(st.claims))
	for b, c := range st.claims {
		if b >= 0 && b < m.buckets {
			claims[b] = c.member
		}
	}
	release, take := plan(m.buckets, members, claims, m.id)
	for _, b := range release {
		m.stopReader(ctx, b, true)
	}
	for _, b := range take {
		rev, err := m.kv.Create(rctx, claimKey(b), claim)
		if err != nil {
			continue // someone was quicker, or the old claim has not expired: next round
		}
		if err := m.startReader(ctx, b, rev); err != nil {
			m.cfg.Logger.Warn("groups: cannot read a bucket; giving it back", "group", m.cfg.Group, "member", m.id, "bucket", b, "err", err)
			_ = m.kv.Delete(rctx, claimKey(b), jetstream.LastRevision(rev))
		}
	}
	return nil
}

// beat writes the heartbeat and renews every claim; a claim that cannot be
// renewed (expired, or taken) stops its reader at once.
func (m *Member) beat(ctx context.Context, claim []byte) error {
	hb, _ := json.Marshal(memberValue{Member: m.id, Topic: m.cfg.Topic, Since: m.since})
	if _, err := m.kv.Put(ctx, memberKey(m.id), hb); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	m.mu.Lock()
	held := make(map[int]*reader, len(m.readers))
	for b, r := range m.readers {
		held[b] = r
	}
	m.mu.Unlock()
	for b, r := range held {
		rev, err := m.kv.Update(ctx, claimKey(b), claim, r.claimRev)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			m.cfg.Logger.Warn("groups: lost the claim on a bucket; stopped reading it", "group", m.cfg.Group, "member", m.id, "bucket", b, "err", err)
			m.stopReader(ctx, b, false)
			continue
		}
		r.claimRev = rev
	}
	return nil
}

// stopReader stops reading bucket b; with release it commits what was
// handled and deletes the claim (so another member may take it at once).
func (m *Member) stopReader(ctx context.Context, b int, release bool) {
	m.mu.Lock()
	r := m.readers[b]
	delete(m.readers, b)
	m.mu.Unlock()
	if r == nil {
		return
	}
	r.stop()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.session/2)
	defer cancel()
	if err := m.commitReader(cctx, r, release); err != nil {
		m.cfg.Logger.Warn("groups: commit on release failed; the next reader starts earlier (records delivered twice)", "bucket", b, "err", err)
	}
	if release {
		_ = m.kv.Delete(cctx, claimKey(b), jetstream.LastRevision(r.claimRev))
	}
	m.cfg.Logger.Info("groups: bucket revoked", "group", m.cfg.Group, "member", m.id, "bucket", b, "released", release)
	if m.cfg.Revoked != nil {
		m.cfg.Revoked(b)
	}
}

// Commit commits the handled position of every bucket this member reads.
func (m *Member) Commit(ctx context.Context) error {
	m.mu.Lock()
	rs := make([]*reader, 0, len(m.readers))
	for _, r := range m.readers {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	var errs []error
	for _, r := range rs {
		errs = append(errs, m.commitReader(ctx, r, false))
	}
	return errors.Join(errs...)
}

func (m *Member) commitAll(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, m.session/2)
	defer cancel()
	if err := m.Commit(cctx); err != nil && ctx.Err() == nil {
		m.cfg.Logger.Warn("groups: commit failed; retrying at the next interval", "group", m.cfg.Group, "member", m.id, "err", err)
	}
}

// commitReader moves r's bucket's position forward to what r handled
// (released: r gives the bucket back). Positions only move forward: a
// member that lost a bucket and commits late cannot move it back under the
// new reader.
func (m *Member) commitReader(ctx context.Context, r *reader, released bool) error {
	seq := r.handled.Load()
	if seq <= r.committed.Load() && !released {
		return nil
	}
	val, _ := json.Marshal(Position{Topic: m.cfg.Topic, Seq: seq, Released: released})
	key := positionKey(m.cfg.Group, r.bucket)
	for attempt := 0; attempt < 5; attempt++ {
		e, err := m.pos.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if _, err = m.pos.Create(ctx, key, val); err == nil {
				r.committed.Store(seq)
				return nil
			}
			continue
		case err != nil:
			return err
		}
		var cur Position
		if json.Unmarshal(e.Value(), &cur) == nil && (cur.Seq > seq || (cur.Seq == seq && (cur.Released || !released))) {
			r.committed.Store(seq)
			return nil
		}
		if _, err = m.pos.Update(ctx, key, val, e.Revision()); err == nil {
			r.committed.Store(seq)
			return nil
		}
	}
	return fmt.Errorf("groups: commit %s: the position kept changing", key)
}

// leave stops every reader, commits, gives the buckets back and removes
// the member's heartbeat, so the others rebalance at once instead of after
// the session timeout.
func (m *Member) leave() {
	ctx := context.Background()
	if m.abandon.Load() {
		m.mu.Lock()
		rs := m.readers
		m.readers = map[int]*reader{}
		m.mu.Unlock()
		for _, r := range rs {
			r.stop()
		}
		return
	}
	for _, b := range m.Assignment() {
		m.stopReader(ctx, b, true)
	}
	dctx, cancel := context.WithTimeout(ctx, m.session/2)
	defer cancel()
	_ = m.kv.Delete(dctx, memberKey(m.id))
	m.cfg.Logger.Info("groups: left", "group", m.cfg.Group, "member", m.id)
}
