package groups

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// delivery is one record as a member handled it.
type delivery struct {
	member string
	bucket int
	offset int64
}

// ledger records deliveries per origin partition, in handling order.
type ledger struct {
	mu  sync.Mutex
	got map[wire.Origin][]delivery
}

func (l *ledger) handler(member string) Handler {
	return func(_ context.Context, r Record) error {
		l.mu.Lock()
		l.got[r.Origin] = append(l.got[r.Origin], delivery{member, r.Bucket, r.Offset})
		l.mu.Unlock()
		return nil
	}
}

// check: every origin partition's records 0..want-1 were all delivered;
// within a run of deliveries by one member, offsets go up one by one (no
// gap, no reorder); a new run (the bucket changed hands, or the group
// restarted) starts at or below where the last one ended (redelivery of
// what was not committed, never a skip). It returns the redelivered count.
func (l *ledger) check(t *testing.T, want map[wire.Origin]int64) int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	dups := 0
	for o, n := range want {
		ds := l.got[o]
		seen := map[int64]bool{}
		var next int64
		for i, d := range ds {
			if i > 0 && d.member == ds[i-1].member {
				if d.offset != ds[i-1].offset+1 {
					t.Fatalf("%s: member %s handled offset %d after %d", o, d.member, d.offset, ds[i-1].offset)
				}
			} else if d.offset > next {
				t.Fatalf("%s: member %s started at offset %d, but %d was never handled (a skip)", o, d.member, d.offset, next)
			}
			if seen[d.offset] {
				dups++
			}
			seen[d.offset] = true
			next = max(next, d.offset+1)
		}
		if int64(len(seen)) != n || next != n {
			t.Fatalf("%s: %d distinct offsets handled (up to %d), want 0..%d", o, len(seen), next, n-1)
		}
	}
	return dups
}

// missing says which origin partition has records not handled yet, or nil.
func (l *ledger) missing(want map[wire.Origin]int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for o, n := range want {
		seen := map[int64]bool{}
		for _, d := range l.got[o] {
			seen[d.offset] = true
		}
		if int64(len(seen)) < n {
			return fmt.Errorf("%s: %d of %d handled", o, len(seen), n)
		}
	}
	return nil
}

// balancedErr says why members rs do not hold the 16 buckets evenly, or nil.
func balancedErr(rs []*running) error {
	total := 0
	for _, r := range rs {
		a := r.m.Assignment()
		if len(a) < 16/len(rs) || len(a) > (16+len(rs)-1)/len(rs) {
			return fmt.Errorf("member %s holds %v", r.m.ID(), a)
		}
		total += len(a)
	}
	if total != 16 {
		return fmt.Errorf("%d buckets held", total)
	}
	return nil
}

type running struct {
	m      *Member
	cancel context.CancelFunc
	done   chan error
}

func startMember(t *testing.T, js jetstream.JetStream, cfg Config) *running {
	t.Helper()
	m, err := Join(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{m: m, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("member %s: %v", r.m.ID(), err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("member %s did not stop", r.m.ID())
	}
}

// TestGroupThreeMembers: three members share 16 buckets while records
// arrive: balanced (5 or 6 each), every record handled, offsets in order
// per origin partition. One member dies without a word (no commit, no
// release): its buckets move to the others once its claims expire, and
// the only redeliveries are what it had not committed. The group stops
// cleanly and a new one resumes from the committed positions: nothing is
// handled twice across a clean restart.
func TestGroupThreeMembers(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx := context.Background()
	natstest.CreateTopicStream(t, js, wire.DefaultPrefix, "telemetry", wire.TopicConfig{})
	const session = 2 * time.Second
	var origins []wire.Origin
	for node := range 4 {
		for p := range int32(4) {
			origins = append(origins, wire.Origin{Site: "farm", Node: fmt.Sprintf("pi-%d", node), Topic: "telemetry", Partition: p})
		}
	}
	want := map[wire.Origin]int64{}
	publish := func(n int) {
		for range n {
			for _, o := range origins {
				m, err := wire.NewMsg(wire.DefaultPrefix, o, wire.Record{Offset: want[o], Value: []byte("v")})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := js.PublishMsgAsync(m); err != nil {
					t.Fatal(err)
				}
				want[o]++
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(10 * time.Second):
			t.Fatal("publishes not acknowledged")
		}
	}
	l := &ledger{got: map[wire.Origin][]delivery{}}
	cfg := func(id string) Config {
		return Config{Group: "g1", Topic: "telemetry", Member: id, SessionTimeout: session, CommitInterval: 100 * time.Millisecond, Handler: l.handler(id)}
	}
	publish(50)
	members := []*running{startMember(t, js, cfg("a")), startMember(t, js, cfg("b")), startMember(t, js, cfg("c"))}
	balanced := func(rs []*running, _ int) {
		t.Helper()
		natstest.WaitFor(t, 15*time.Second, func() error { return balancedErr(rs) })
	}
	balanced(members, 3)
	publish(100)

	// c dies: no commit, no release.
	members[2].m.abandon.Store(true)
	died := time.Now()
	members[2].stop(t)
	publish(50)
	balanced(members[:2], 2)
	t.Logf("c's buckets moved %v after it died (session timeout %v)", time.Since(died).Round(time.Millisecond), session)
	publish(50)
	natstest.WaitFor(t, 20*time.Second, func() error { return l.missing(want) })
	dups := l.check(t, want)
	unclean := members[0].m.Stats().UncleanTakeovers + members[1].m.Stats().UncleanTakeovers
	t.Logf("%d records, %d redelivered after c died; %d buckets taken over uncleanly", 16*250, dups, unclean)
	if unclean < uint64(len(members[2].m.Assignment())) || unclean == 0 {
		t.Errorf("c's buckets were taken over uncleanly, but Stats counts %d", unclean)
	}

	// A clean restart of the whole group resumes from the commits.
	members[0].stop(t)
	members[1].stop(t)
	before := l.check(t, want)
	publish(30)
	again := []*running{startMember(t, js, cfg("d")), startMember(t, js, cfg("e"))}
	balanced(again, 2)
	natstest.WaitFor(t, 20*time.Second, func() error { return l.missing(want) })
	if after := l.check(t, want); after != before {
		t.Fatalf("%d records handled again after a clean restart; want none", after-before)
	}
	for _, r := range again {
		if s := r.m.Stats(); s.UncleanTakeovers != 0 || s.Takeovers == 0 {
			t.Errorf("member %s after a clean restart: %+v, want takeovers and none unclean", r.m.ID(), s)
		}
	}
	_ = ctx
}

// TestGroupJoinLeaveStorm: members join and leave (cleanly) every few
// hundred milliseconds while records arrive, for 5 s (60 s with
// OUTPOST_LONG=1): no bucket is ever read by two members at once (the
// assigned/revoked callbacks are checked), no record is lost, and the
// group settles balanced once the storm ends. The seed is printed.
func TestGroupJoinLeaveStorm(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	stormFor := 5 * time.Second
	if os.Getenv("OUTPOST_LONG") == "1" {
		stormFor = 60 * time.Second
	}
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	natstest.CreateTopicStream(t, js, wire.DefaultPrefix, "telemetry", wire.TopicConfig{})
	var origins []wire.Origin
	for p := range int32(12) {
		origins = append(origins, wire.Origin{Site: "farm", Node: "pi-a", Topic: "telemetry", Partition: p})
	}
	want := map[wire.Origin]int64{}
	var pubMu sync.Mutex
	publish := func() {
		pubMu.Lock()
		defer pubMu.Unlock()
		for _, o := range origins {
			m, _ := wire.NewMsg(wire.DefaultPrefix, o, wire.Record{Offset: want[o], Value: []byte("v")})
			if _, err := js.PublishMsg(context.Background(), m); err != nil {
				t.Error(err)
				return
			}
			want[o]++
		}
	}
	l := &ledger{got: map[wire.Origin][]delivery{}}
	var amu sync.Mutex
	active := map[int]string{}
	overlaps := 0
	cfg := func(id string) Config {
		return Config{Group: "storm", Topic: "telemetry", Member: id, SessionTimeout: 2 * time.Second, CommitInterval: 50 * time.Millisecond,
			Handler: l.handler(id),
			Assigned: func(b int) {
				amu.Lock()
				if other, ok := active[b]; ok {
					overlaps++
					t.Errorf("bucket %d assigned to %s while %s reads it", b, id, other)
				}
				active[b] = id
				amu.Unlock()
			},
			Revoked: func(b int) {
				amu.Lock()
				if active[b] == id {
					delete(active, b)
				}
				amu.Unlock()
			},
		}
	}
	stopPub := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stopPub:
				return
			case <-time.After(5 * time.Millisecond):
				publish()
			}
		}
	})
	var live []*running
	next, joins, leaves := 0, 0, 0
	for start := time.Now(); time.Since(start) < stormFor; {
		if len(live) < 2 || (len(live) < 6 && rng.IntN(2) == 0) {
			live = append(live, startMember(t, js, cfg(fmt.Sprintf("s%03d", next))))
			next++
			joins++
		} else {
			i := rng.IntN(len(live))
			live[i].stop(t)
			live = append(live[:i], live[i+1:]...)
			leaves++
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
	}
	close(stopPub)
	wg.Wait()
	settled := time.Now()
	natstest.WaitFor(t, 20*time.Second, func() error {
		if err := balancedErr(live); err != nil {
			return err
		}
		return l.missing(want)
	})
	dups := l.check(t, want)
	t.Logf("%d joins, %d leaves; settled %v after the storm with %d members; %d records, %d redelivered, %d overlaps",
		joins, leaves, time.Since(settled).Round(time.Millisecond), len(live), 12*int(want[origins[0]]), dups, overlaps)
}

// TestGroupSurvivesServerRestart: the NATS server restarts while two
// members read and records arrive: afterwards every record is handled,
// in order per origin partition within each member's run, nothing
// skipped (claims may have expired meanwhile; the group rebalances).
func TestGroupSurvivesServerRestart(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	natstest.CreateTopicStream(t, js, wire.DefaultPrefix, "telemetry", wire.TopicConfig{})
	var origins []wire.Origin
	for p := range int32(8) {
		origins = append(origins, wire.Origin{Site: "farm", Node: "pi-a", Topic: "telemetry", Partition: p})
	}
	want := map[wire.Origin]int64{}
	publish := func(rounds int) {
		t.Helper()
		for range rounds {
			for _, o := range origins {
				m, _ := wire.NewMsg(wire.DefaultPrefix, o, wire.Record{Offset: want[o], Value: []byte("v")})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := js.PublishMsg(ctx, m, jetstream.WithRetryAttempts(50), jetstream.WithRetryWait(100*time.Millisecond))
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				want[o]++
			}
		}
	}
	l := &ledger{got: map[wire.Origin][]delivery{}}
	cfg := func(id string) Config {
		return Config{Group: "r", Topic: "telemetry", Member: id, SessionTimeout: 2 * time.Second, CommitInterval: 100 * time.Millisecond, Handler: l.handler(id)}
	}
	publish(50)
	startMember(t, js, cfg("a"))
	startMember(t, js, cfg("b"))
	publish(50)
	srv.Restart()
	publish(50)
	natstest.WaitFor(t, 30*time.Second, func() error { return l.missing(want) })
	dups := l.check(t, want)
	t.Logf("%d records across a server restart, %d redelivered", 8*150, dups)
}

// TestGroupBatchFormat: records forwarded in batch format (many records
// per message) reach the handler one by one, in offset order, each with
// its origin, key, value, headers and timestamp, all carrying the batch
// message's stream sequence; the position moves past the batch only once
// all its records were handled.
func TestGroupBatchFormat(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	natstest.CreateTopicStream(t, js, wire.DefaultPrefix, "telemetry", wire.TopicConfig{})
	o := wire.Origin{Site: "farm", Node: "pi-a", Topic: "telemetry", Partition: 2}
	var recs []wire.Record
	for off := range int64(5) {
		recs = append(recs, wire.Record{Offset: off, Timestamp: 1000 + off, Key: []byte("dev-1"), Value: []byte(fmt.Sprint("v", off)),
			Headers: []wire.Header{{Key: "unit", Value: []byte("C")}}})
	}
	m, err := wire.NewBatchMsg(wire.DefaultPrefix, o, recs)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []Record
	r := startMember(t, js, Config{Group: "b", Topic: "telemetry", SessionTimeout: 2 * time.Second, Handler: func(_ context.Context, r Record) error {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		return nil
	}})
	natstest.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < 5 {
			return fmt.Errorf("%d of 5 records", len(got))
		}
		return nil
	})
	for i, g := range got {
		if g.Origin != o || g.Offset != int64(i) || g.Timestamp != 1000+int64(i) || string(g.Key) != "dev-1" ||
			string(g.Value) != fmt.Sprint("v", i) || len(g.Headers) != 1 || string(g.Headers[0].Value) != "C" || g.Seq != ack.Sequence {
			t.Fatalf("record %d: %+v", i, g)
		}
	}
	if err := r.m.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.m.Close() // leaves as a cancelled Run does; Run returns nil
	if err := <-r.done; err != nil {
		t.Fatalf("Run after Close: %v", err)
	}
	close(r.done)
	gi, err := Describe(context.Background(), js, "", "b")
	if err != nil {
		t.Fatal(err)
	}
	if gi.LagRecords != 0 || gi.Buckets[got[0].Bucket].Committed != ack.Sequence {
		t.Fatalf("after the batch: lag %d, bucket %+v", gi.LagRecords, gi.Buckets[got[0].Bucket])
	}
}
