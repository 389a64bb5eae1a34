package upstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// reachable is a peer link's state as the takeover sees it; the node tests
// (edge/node) run real peer links.
type reachable struct{ up atomic.Bool }

func (r *reachable) Connected() bool { return r.up.Load() }

// owner is pi-a in the takeover tests: its forwarder and lease keeper,
// running on url.
type owner struct {
	f   *Forwarder
	reg *prometheus.Registry
	log *logBuf
}

func startOwner(t *testing.T, url string, l *log.Log, fenced bool) owner {
	t.Helper()
	lg, lb := newLogger(t)
	cfg := testConfig(url, lg)
	cfg.Fenced = fenced
	f, err := New(context.Background(), cfg, l, openMeta(t, metaPath(t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, _ := NewLeaseMetrics(reg)
	keeper, err := NewLeaseKeeper(LeaseKeeperConfig{Link: f.link, Site: testSite, Node: testNode, TTL: time.Second, Logger: lg, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	runFor(t, keeper.Run)
	return owner{f, reg, lb}
}

// taker is pi-b: its own link on url and a takeover of pi-a's replica.
type taker struct {
	tk  *Takeover
	reg *prometheus.Registry
	log *logBuf
}

func startTaker(t *testing.T, url string, replica *log.Log, peer Liveness, after time.Duration) taker {
	t.Helper()
	lg, lb := newLogger(t)
	link, err := NewLink(LinkConfig{URL: url, ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond, Timeout: 2 * time.Second, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	runFor(t, link.Run)
	fc := testConfig("", lg)
	fc.URL, fc.Link = "", link
	reg := prometheus.NewRegistry()
	m, err := NewLeaseMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	tk, err := NewTakeover(context.Background(), TakeoverConfig{Forwarder: fc, Holder: "pi-b", Owner: peer, After: after, TTL: time.Second, Metrics: m},
		replica, openMeta(t, metaPath(t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	runFor(t, tk.Run)
	return taker{tk, reg, lb}
}

// TestTakeoverForwardsWhileOwnerIsGone: pi-a forwards its log and keeps its
// lease; a split between the nodes alone does not make pi-b take over (the
// lease is held); then pi-a's uplink dies without a word (the lease lapses, nothing is
// released) and pi-b, which keeps a replica and cannot reach pi-a either,
// takes the lease and forwards the replica from where the stream ends.
// pi-a comes back: it takes its lease back, pi-b stops, and pi-a forwards
// on. The stream holds every offset once, in order; the status reports
// say who forwarded.
func TestTakeoverForwardsWhileOwnerIsGone(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx := context.Background()
	if _, err := OpenLeases(ctx, js, time.Second); err != nil { // a 1 s TTL for the test
		t.Fatal(err)
	}
	createStream(t, js, "t", wire.TopicConfig{})
	const parts = 2
	var logs []*log.Log
	for range 2 {
		l := openLog(t, t.TempDir())
		createTopic(t, l, "t", parts)
		logs = append(logs, l)
	}
	counts := map[int32]int64{}
	appendBoth := func(n int) {
		for part := range int32(parts) {
			for _, l := range logs {
				appendN(t, l, "t", part, n, 60)
			}
			counts[part] += int64(n)
		}
	}

	// pi-a: its forwarder and lease keeper over a link that can die.
	px := startProxy(t, srv.URL()[len("nats://"):])
	a := startOwner(t, px.url(), logs[0], false)
	fA, logA := a.f, a.log
	// pi-b: its own link, and a takeover of pi-a's replica.
	peerA := &reachable{}
	peerA.up.Store(true)
	b := startTaker(t, srv.URL(), logs[1], peerA, 300*time.Millisecond)
	tk, regB, logB := b.tk, b.reg, b.log

	statuses := make(chan wire.Status, 1024)
	nc, _ := srv.Connect()
	sub, err := nc.Subscribe(wire.StatusSubject(wire.DefaultPrefix, testSite, testNode), func(m *nats.Msg) {
		if st, err := wire.DecodeStatus(m.Data); err == nil {
			select {
			case statuses <- st:
			default:
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	appendBoth(300)
	waitForwarded(t, fA, 20*time.Second, parts)
	time.Sleep(1500 * time.Millisecond) // past a TTL: pi-a renews, pi-b (peer reachable) never tries
	// The site's network splits, pi-a's uplink stays up: pi-a keeps its
	// lease, so pi-b must not take over however long it cannot see pi-a.
	peerA.up.Store(false)
	appendBoth(100)
	time.Sleep(2500 * time.Millisecond)
	if v := metricValue(t, regB, "outpost_upstream_takeovers_total"); v != 0 {
		t.Fatalf("pi-b took over %v times while pi-a was up (and forwarding)", v)
	}
	if logB.Count("its forwarding lease is held") == 0 {
		t.Errorf("pi-b did not report the held lease:\n%s", logB.String())
	}
	peerA.up.Store(true)

	// pi-a's uplink dies silently and pi-b loses sight of it; devices'
	// records keep reaching both logs (acks: all).
	px.down.Store(true)
	px.cutAll()
	peerA.up.Store(false)
	died := time.Now()
	appendBoth(400)
	natstest.WaitFor(t, 20*time.Second, func() error {
		if v := metricValue(t, regB, "outpost_upstream_leases_held", "origin", testNode); v != 1 {
			return fmt.Errorf("pi-b holds no lease on pi-a")
		}
		return nil
	})
	t.Logf("pi-b took over %v after pi-a's uplink died (lease TTL 1s, after 300ms)", time.Since(died).Round(time.Millisecond))
	appendBoth(200)
	waitForwarded(t, tk.Forwarder(), 20*time.Second, parts)
	checkExactlyOnce(t, js, "t", counts)
	sawB := false
	for len(statuses) > 0 {
		if st := <-statuses; st.ForwardedBy == "pi-b" {
			sawB = true
		}
	}
	natstest.WaitFor(t, 5*time.Second, func() error {
		for !sawB {
			select {
			case st := <-statuses:
				sawB = st.ForwardedBy == "pi-b"
			default:
				return fmt.Errorf("no status report from pi-b forwarding for pi-a")
			}
		}
		return nil
	})

	// pi-a comes back: it takes its lease back, pi-b stops and lets go.
	px.down.Store(false)
	peerA.up.Store(true)
	appendBoth(300)
	waitForwarded(t, fA, 20*time.Second, parts)
	natstest.WaitFor(t, 10*time.Second, func() error {
		if v := metricValue(t, regB, "outpost_upstream_leases_held", "origin", testNode); v != 0 {
			return fmt.Errorf("pi-b still holds pi-a's lease")
		}
		return nil
	})
	checkExactlyOnce(t, js, "t", counts)
	if v := metricValue(t, regB, "outpost_upstream_takeovers_total", "origin", testNode); v != 1 {
		t.Errorf("takeovers_total = %v, want 1", v)
	}
	if n := logA.Count("level=ERROR") + logB.Count("level=ERROR"); n != 0 {
		t.Errorf("%d error lines:\n%s\n%s", n, logA.String(), logB.String())
	}
}

// TestLeaseRaceWithFlappingUplinks: pi-a (its forwarder and lease keeper)
// and pi-b (a takeover of pi-a, which never sees pi-a on the site network)
// forward the same origin partitions from logs that hold the same records,
// while both uplinks flap and pi-a's goes down for longer than the lease's
// TTL now and then: pi-b takes over, pi-a comes back and takes its lease
// back, again and again, for far longer than the stream's duplicate window
// (100 ms). Zero duplicates and zero gaps upstream.
func TestLeaseRaceWithFlappingUplinks(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d (flap schedule and append pace are random)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	raceFor := 8 * time.Second
	if longTests() {
		raceFor = 120 * time.Second
	}
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx := context.Background()
	if _, err := OpenLeases(ctx, js, time.Second); err != nil {
		t.Fatal(err)
	}
	createStream(t, js, "t", wire.TopicConfig{DuplicateWindow: 100 * time.Millisecond})
	const parts = 2
	var logs []*log.Log
	for range 2 {
		l := openLog(t, t.TempDir())
		createTopic(t, l, "t", parts)
		logs = append(logs, l)
	}
	pxA := startProxy(t, srv.URL()[len("nats://"):])
	pxB := startProxy(t, srv.URL()[len("nats://"):])
	a := startOwner(t, pxA.url(), logs[0], true)
	fA, regA, logA := a.f, a.reg, a.log
	b := startTaker(t, pxB.url(), logs[1], &reachable{}, 100*time.Millisecond)
	regB, logB := b.reg, b.log

	counts := map[int32]int64{}
	stopFeed := feedLogs(t, seed, logs, parts, 20, 60, 5, counts)
	outages, cuts := 0, 0
	for start := time.Now(); time.Since(start) < raceFor; {
		switch rng.IntN(4) {
		case 0: // pi-a's uplink is down past the lease's TTL
			pxA.down.Store(true)
			cuts += pxA.cutAll()
			time.Sleep(time.Duration(1200+rng.IntN(800)) * time.Millisecond)
			pxA.down.Store(false)
			outages++
		default: // a flap on either link
			time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
			if rng.IntN(2) == 0 {
				cuts += pxA.cutAll()
			} else {
				cuts += pxB.cutAll()
			}
		}
	}
	stopFeed()
	waitForwarded(t, fA, 60*time.Second, parts)
	checkExactlyOnce(t, js, "t", counts)
	takeovers := metricValue(t, regB, "outpost_upstream_takeovers_total")
	takenBack := metricValue(t, regA, "outpost_upstream_leases_lost_total")
	t.Logf("%d outages of pi-a's uplink, %d connections cut; pi-b took over %v times, pi-a took its lease back %v times; records %v",
		outages, cuts, takeovers, takenBack, counts)
	if outages > 0 && takeovers == 0 {
		t.Errorf("pi-a's uplink was down past the TTL %d times and pi-b never took over:\n%s", outages, logB.String())
	}
	if n := logA.Count("level=ERROR") + logB.Count("level=ERROR"); n != 0 {
		t.Errorf("%d error lines:\n%s\n%s", n, logA.String(), logB.String())
	}
}
