package upstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// future is a resolved jetstream.PubAckFuture.
type future struct {
	ok    chan *jetstream.PubAck
	err   chan error
	first error // what err carries
}

func done(err error, dup bool) *future {
	f := &future{ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1), first: err}
	if err != nil {
		f.err <- err
	} else {
		f.ok <- &jetstream.PubAck{Duplicate: dup}
	}
	return f
}

func (f *future) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *future) Err() <-chan error            { return f.err }
func (f *future) Msg() *nats.Msg               { return nil }

// TestAbortArmsResend: abort arms (and saves) a resend from the first
// failed message exactly when the stream may not end right below it.
func TestAbortArmsResend(t *testing.T) {
	refused := &jetstream.APIError{ErrorCode: codeStreamStoreFailed, Description: "maximum messages exceeded"}
	cases := []struct {
		name       string
		mode       Mode
		futures    []*future
		headFailed bool
		wantAcked  int64
		wantRedo   int64 // -1: none
		wantCuts   []span
		suspect    bool
	}{
		// Unknown outcomes only, on one connection: the stream holds a
		// prefix; resuming after its last record is exact.
		{"unknown_all", ModeRecord, []*future{done(nats.ErrDisconnected, false), done(nats.ErrDisconnected, false), done(jetstream.ErrAsyncPublishTimeout, false)}, true, 10, -1, nil, false},
		{"suffix_fails", ModeRecord, []*future{done(nil, false), done(nil, true), done(nats.ErrDisconnected, false)}, false, 12, -1, nil, false},
		// A refusal: the stream ends below the refused record unless a later
		// one went in; resend from it either way.
		{"refused_all", ModeRecord, []*future{done(refused, false), done(refused, false), done(refused, false)}, true, 10, 10, nil, false},
		{"refused_no_responders", ModeRecord, []*future{done(nats.ErrNoResponders, false)}, true, 10, 10, nil, false},
		// The refusal clears and the next message is stored but its ack is
		// lost with the connection: the outcome after the refusal is
		// unknown, and resuming after the stream's last would skip 10.
		{"refused_then_unknown", ModeRecord, []*future{done(refused, false), done(nats.ErrDisconnected, false), done(jetstream.ErrAsyncPublishTimeout, false)}, true, 10, 10, nil, false},
		{"refused_after_acks", ModeRecord, []*future{done(nil, false), done(refused, false), done(nats.ErrDisconnected, false)}, false, 11, 11, nil, false},
		{"hole", ModeRecord, []*future{done(refused, false), done(nil, false), done(nil, false)}, true, 10, 10, nil, true},
		{"hole_after_acks", ModeRecord, []*future{done(nil, false), done(jetstream.ErrAsyncPublishTimeout, false), done(nil, true)}, false, 11, 11, nil, true},
		{"batch_hole", ModeBatch, []*future{done(refused, false), done(refused, false), done(nil, false)}, true, 10, 10,
			[]span{{10, 10}, {11, 11}, {12, 12}}, true},
		{"batch_refused", ModeBatch, []*future{done(nil, false), done(refused, false), done(nats.ErrDisconnected, false)}, false, 11, 11,
			[]span{{11, 11}, {12, 12}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			st := openMeta(t, metaPath(dir))
			lg, _ := newLogger(t)
			f := &Forwarder{cfg: DefaultConfig(), store: st, log: lg}
			f.cfg.Mode = c.mode
			m, err := newMetrics(f, nil)
			if err != nil {
				t.Fatal(err)
			}
			f.m = m
			p := &partition{f: f, origin: wire.Origin{Topic: "t"}, pkey: "0"}
			p.acked.Store(10)
			var q []inflight
			for i, fu := range c.futures {
				q = append(q, inflight{first: 10 + int64(i), last: 10 + int64(i), records: 1, fut: fu})
			}
			if c.headFailed {
				<-q[0].fut.Err() // pump consumed the head's error
			}
			var first error = errors.New("first")
			if c.headFailed {
				first = c.futures[0].first
			}
			err = p.abort(context.Background(), q, c.headFailed, first)
			if err == nil {
				t.Fatal("abort returned nil")
			}
			if got := p.acked.Load(); got != c.wantAcked {
				t.Errorf("acked %d, want %d", got, c.wantAcked)
			}
			switch {
			case c.wantRedo < 0 && p.redo != nil:
				t.Errorf("resend armed from %d, want none", p.redo.From)
			case c.wantRedo >= 0 && p.redo == nil:
				t.Errorf("no resend armed, want from %d", c.wantRedo)
			case c.wantRedo >= 0 && (p.redo.From != c.wantRedo || !slices.Equal(p.redo.Cuts, c.wantCuts) || p.redo.Suspect != c.suspect):
				t.Errorf("resend %+v, want from %d cuts %v suspect %v", p.redo, c.wantRedo, c.wantCuts, c.suspect)
			}
			// What a restarted partition finds in the store.
			p2 := &partition{f: f, origin: wire.Origin{Topic: "t"}, pkey: "0"}
			saved, err := p2.loadRedo(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case c.wantRedo < 0 && saved != nil:
				t.Errorf("resend saved from %d, want none", saved.From)
			case c.wantRedo >= 0 && (saved == nil || saved.From != c.wantRedo || saved.To != 10+int64(len(q))-1 || !slices.Equal(saved.Cuts, c.wantCuts)):
				t.Errorf("saved resend %+v, want from %d until %d cuts %v", saved, c.wantRedo, 10+len(q)-1, c.wantCuts)
			}
		})
	}
}

// TestResendKeepsEveryOffsetOnce drives the resend path against a real
// stream: records 0..9 are in, 10 is missing, 11..14 are in (what a refusal
// followed by a success leaves). The forwarder resends from 10 and the
// stream ends with every offset exactly once, 10 after 14.
func TestResendKeepsEveryOffsetOnce(t *testing.T) {
	testResendKeepsEveryOffsetOnce(t, 0, false)
}

// TestResendSurvivesRestart: the resend was armed and saved by a process
// that then died. A fresh forwarder must find it and resend from 10, not
// resume after the stream's last record (14) and leave 10 out for good.
func TestResendSurvivesRestart(t *testing.T) {
	testResendKeepsEveryOffsetOnce(t, 0, true)
}

// TestResendAfterLongOutageLeavesNoHole: the failure that armed the resend
// is older than the duplicate window (a partial failure, then a long
// outage). Resuming after the stream's last record would lose offset 10 for
// good; the resend must still happen. (Here the server still deduplicates
// 11..14 because it received them recently; past its window they could be
// duplicated, which consumers can detect by origin offset; a loss they
// could not.)
func TestResendAfterLongOutageLeavesNoHole(t *testing.T) {
	testResendKeepsEveryOffsetOnce(t, time.Hour, false)
}

func testResendKeepsEveryOffsetOnce(t *testing.T, age time.Duration, restarted bool) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 1)
	createStream(t, js, "t", wire.TopicConfig{})
	appendN(t, l, "t", 0, 20, 50)
	lg, logs := newLogger(t)
	f, err := New(t.Context(), testConfig(srv.URL(), lg), l, st)
	if err != nil {
		t.Fatal(err)
	}
	// Put the stream in the state a hole leaves.
	src, _ := l.Partition("t", 0)
	recs, err := src.Read(context.Background(), 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := newPartition(f, wire.Origin{Site: testSite, Node: testNode, Topic: "t"}, src)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 15 {
		if i == 10 {
			continue
		}
		m, _, err := p.message(recs[i:i+1], new([]span), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	r := &redo{V: 1, From: 10, To: 14, At: time.Now().Add(-age), Suspect: true}
	if restarted {
		p.saveRedo(ctx, r)
		if !p.redoSaved {
			t.Fatal("resend not saved")
		}
	} else {
		p.acked.Store(10)
		p.redo = r
		f.parts[partKey{"t", 0}] = p
	}
	runForwarder(t, f)
	waitForwarded(t, f, 10*time.Second, 1)
	got := streamRecords(t, js, "t")[0]
	seen := map[int64]int{}
	for _, r := range got {
		seen[r.Offset]++
	}
	if len(got) != 20 || len(seen) != 20 {
		t.Fatalf("stream holds %d records, %d distinct, want 20: %s", len(got), len(seen), describeOffsets(got))
	}
	if got[14].Offset != 10 {
		t.Errorf("offset 10 expected after 14 (resent): %s", describeOffsets(got))
	}
	if !strings.Contains(logs.String(), "resending from the first unacknowledged record") {
		t.Errorf("resend not logged:\n%s", logs.String())
	}
	if restarted && !strings.Contains(logs.String(), "resuming a resend armed before the restart") {
		t.Errorf("restart's resend not logged:\n%s", logs.String())
	}
	// Once the resend is through, it is no longer saved.
	natstest.WaitFor(t, 5*time.Second, func() error {
		if _, ok, err := st.Get(ctx, redoBucket, p.redoKey()); err != nil || ok {
			return fmt.Errorf("saved resend still there (err %v)", err)
		}
		return nil
	})
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.URL, good.Site, good.Node = "nats://127.0.0.1:4222", "s", "n"
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	cases := map[string]func(*Config){
		"URL":                  func(c *Config) { c.URL = "" },
		"Site":                 func(c *Config) { c.Site = "a.b" },
		"Node":                 func(c *Config) { c.Node = "" },
		"Prefix":               func(c *Config) { c.Prefix = "a..b" },
		"Window":               func(c *Config) { c.Window = 0 },
		"MaxReadBytes":         func(c *Config) { c.MaxReadBytes = 10 },
		"MaxInflightBytes":     func(c *Config) { c.MaxInflightBytes = 1 },
		"Mode":                 func(c *Config) { c.Mode = 7 },
		"MaxBatchRecords":      func(c *Config) { c.MaxBatchRecords = 0 },
		"BandwidthBytesPerSec": func(c *Config) { c.BandwidthBytesPerSec = -1 },
		"ReconnectMax":         func(c *Config) { c.ReconnectMax = c.ReconnectMin / 2 },
		"AckTimeout":           func(c *Config) { c.AckTimeout = time.Millisecond },
		"TLS.CertFile":         func(c *Config) { c.TLS.CertFile = "cert.pem" },
		"Link":                 func(c *Config) { c.Link = &Link{} },
	}
	for field, mutate := range cases {
		c := good
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: Validate() = %v, want an error naming the field", field, err)
		}
	}
	if _, err := ParseMode("batch"); err != nil {
		t.Error(err)
	}
	if _, err := ParseMode("bulk"); err == nil {
		t.Error("ParseMode accepted bulk")
	}
}

func TestSchedulerCapsRate(t *testing.T) {
	s := newScheduler(100<<10, 1<<30, nil) // 100 KiB/s
	ctx := context.Background()
	start := time.Now()
	for range 30 {
		if err := s.acquire(ctx, 10<<10, false); err != nil {
			t.Fatal(err)
		}
	}
	// 300 KiB at 100 KiB/s with 10 KiB of burst: about 2.9 s.
	if el := time.Since(start); el < 2500*time.Millisecond || el > 6*time.Second {
		t.Errorf("300 KiB took %v at 100 KiB/s", el)
	}
}

func TestSchedulerInflightBudget(t *testing.T) {
	s := newScheduler(0, 100, nil)
	ctx := context.Background()
	if err := s.acquire(ctx, 60, false); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := s.acquire(short, 60, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire beyond the budget: %v, want to wait", err)
	}
	got := make(chan error, 1)
	go func() { got <- s.acquire(ctx, 60, false) }()
	s.release(60)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	s.release(60)
	// A message larger than the whole budget goes when nothing else is in flight.
	if err := s.acquire(ctx, 1000, false); err != nil {
		t.Fatal(err)
	}
	s.release(1000)
	if s.inflight != 0 {
		t.Fatalf("inflight %d after releasing everything", s.inflight)
	}
}

func TestSchedulerLiveFirst(t *testing.T) {
	s := newScheduler(0, 1<<30, nil)
	s.enterLive()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.acquire(ctx, 1, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("backlog acquire while live publishes: %v, want to wait", err)
	}
	if err := s.acquire(context.Background(), 1, true); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- s.acquire(context.Background(), 1, false) }()
	s.exitLive()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backlog not released after the live partition finished")
	}
}

// lateLister wraps the log so that the first read of a partition first
// does what a killed predecessor's connection does: its last messages
// (offsets from..to) are stored only after the resume point was read, and
// then more than the duplicate window passes.
type lateLister struct {
	lister
	once  sync.Once
	late  func()
	delay time.Duration
}

type lateSource struct {
	source
	l *lateLister
}

func (ll *lateLister) open(topic string, partition int32) (source, error) {
	s, err := ll.lister.open(topic, partition)
	return lateSource{s, ll}, err
}

func (s lateSource) Read(ctx context.Context, from int64, maxBytes int) ([]log.Record, error) {
	if maxBytes <= 1 {
		// Lag's one-record read for the oldest record's age, which may come
		// before resolve; the pump's reads come after it.
		return s.source.Read(ctx, from, maxBytes)
	}
	s.l.once.Do(func() {
		s.l.late()
		time.Sleep(s.l.delay)
	})
	return s.source.Read(ctx, from, maxBytes)
}

// TestLateMessagesOfPredecessorNotDuplicated: the stream holds 0..9 when
// the forwarder reads its resume point (10); then 10..14, sent by the
// process before it, land; then the duplicate window (100 ms) passes. The
// forwarder's first publish, offset 10, carries the expected last subject
// sequence and is refused, so it resolves again and resumes at 15: every
// offset once. Resending 10..14 would duplicate them.
func TestLateMessagesOfPredecessorNotDuplicated(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 1)
	createStream(t, js, "t", wire.TopicConfig{DuplicateWindow: 100 * time.Millisecond})
	appendN(t, l, "t", 0, 40, 50)
	lg, logs := newLogger(t)
	src, _ := l.Partition("t", 0)
	recs, err := src.Read(context.Background(), 0, 1<<20)
	if err != nil || len(recs) < 15 {
		t.Fatalf("read: %d records, %v", len(recs), err)
	}
	cfg := testConfig(srv.URL(), lg)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	probe := &Forwarder{cfg: cfg.withDefaults()}
	pp, err := newPartition(probe, wire.Origin{Site: testSite, Node: testNode, Topic: "t"}, src)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i := from; i <= to; i++ {
			m, _, err := pp.message(recs[i:i+1], new([]span), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, 9)
	ll := &lateLister{lister: logLister{l}, late: func() { publish(10, 14) }, delay: 300 * time.Millisecond}
	f, err := newForwarder(t.Context(), cfg, ll, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitForwarded(t, f, 10*time.Second, 1)
	got := streamRecords(t, js, "t")[0]
	seen := map[int64]int{}
	for _, r := range got {
		seen[r.Offset]++
	}
	if len(got) != 40 || len(seen) != 40 {
		t.Fatalf("stream holds %d records, %d distinct, want 40 once each: %s\n%s", len(got), len(seen), describeOffsets(got), logs.String())
	}
	for i, r := range got {
		if r.Offset != int64(i) {
			t.Fatalf("stream position %d holds offset %d: %s", i, r.Offset, describeOffsets(got))
		}
	}
	if n := metricValue(t, reg, "outpost_upstream_resumes_total", "source", "moved"); n < 1 {
		t.Errorf("no resume counted as moved (%v)", n)
	}
}

// recordingBudget counts what the scheduler asks of a shared budget.
type recordingBudget struct{ bytes atomic.Int64 }

func (b *recordingBudget) Wait(_ context.Context, n int) error {
	b.bytes.Add(int64(n))
	return nil
}

// TestSchedulerUsesTheSharedBudget: with a Budget (shared with the peer
// links), every acquire asks it for its bytes, and the scheduler's own
// bucket is off (the budget is the cap).
func TestSchedulerUsesTheSharedBudget(t *testing.T) {
	b := &recordingBudget{}
	s := newScheduler(100<<10, 1<<30, b)
	if s.rate != 0 {
		t.Fatalf("own cap %v with a shared budget", s.rate)
	}
	for range 10 {
		if err := s.acquire(context.Background(), 1000, true); err != nil {
			t.Fatal(err)
		}
	}
	if b.bytes.Load() != 10000 {
		t.Fatalf("budget asked for %d bytes, want 10000", b.bytes.Load())
	}
}
