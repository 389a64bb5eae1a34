package upstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// TestFencedForwardersNeverDuplicate is the lease race without the lease:
// two fenced forwarders forward the same origin partitions from two logs
// that hold the same records (an owner and its replica), at the same time,
// one over a link that flaps, the other over one that delays what it
// sends by 250 ms, into a stream whose duplicate window (100 ms) is far shorter than
// that delay. Every offset must land once and in
// order: only the conditional batches keep them apart. With the stream
// refusing atomic batches the fallback (one conditional message per round
// trip) must hold the same.
func TestFencedForwardersNeverDuplicate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mode   Mode
		atomic bool
	}{{"record", ModeRecord, true}, {"batch", ModeBatch, true}, {"record-no-atomic", ModeRecord, false}} {
		t.Run(tc.name, func(t *testing.T) { testFencedForwarders(t, tc.mode, tc.atomic) })
	}
}

func testFencedForwarders(t *testing.T, mode Mode, atomic bool) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d (cut intervals and append pace are random)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	raceFor := 3 * time.Second
	if longTests() {
		raceFor = 60 * time.Second
	}
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx := context.Background()
	sc, err := wire.StreamConfig(wire.DefaultPrefix, "t", wire.TopicConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sc.Duplicates = 100 * time.Millisecond
	sc.AllowAtomicPublish = atomic
	if _, err := js.CreateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	const parts = 2
	type side struct {
		px  *proxy
		f   *Forwarder
		reg *prometheus.Registry
	}
	var sides []side
	var logs []*log.Log
	counts := map[int32]int64{}
	// Per partition, so that both pipelines stay full for a while; one
	// message per round trip (no atomic batches) goes slower.
	backlog, burst, slow := int64(4000), 40, 200
	if !atomic {
		backlog, burst, slow = 300, 4, 3
	}
	for i := range 2 {
		dir := t.TempDir()
		l := openLog(t, dir)
		createTopic(t, l, "t", parts)
		for part := range int32(parts) {
			appendN(t, l, "t", part, int(backlog), 80)
			counts[part] = backlog
		}
		px := startProxy(t, srv.URL()[len("nats://"):])
		if i == 1 {
			// What this forwarder publishes reaches the server 2.5
			// duplicate windows late: the lapsed forwarder whose
			// publishes are still on their way when the other one has
			// forwarded the same records.
			px.delay.Store(int64(250 * time.Millisecond))
		}
		lg, lb := newLogger(t)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("forwarder %d's log:\n%s", i, lb.String())
			}
		})
		cfg := testConfig(px.url(), lg.With("forwarder", i))
		cfg.AckTimeout = 2 * time.Second
		cfg.Mode = mode
		cfg.MaxBatchRecords = 30
		cfg.Fenced = true
		reg := prometheus.NewRegistry()
		cfg.Registerer = reg
		f, err := New(t.Context(), cfg, l, openMeta(t, metaPath(dir)))
		if err != nil {
			t.Fatal(err)
		}
		sides = append(sides, side{px, f, reg})
		logs = append(logs, l)
	}
	// The slow one starts first and is well into the backlog when the
	// fast one starts.
	runForwarder(t, sides[1].f)
	natstest.WaitFor(t, 20*time.Second, func() error {
		lags := sides[1].f.Lag()
		if len(lags) < parts {
			return fmt.Errorf("the slow forwarder knows %d partitions", len(lags))
		}
		for _, l := range lags {
			if l.ForwardedOffset < int64(slow) {
				return fmt.Errorf("the slow forwarder is at %d of %s/%d", l.ForwardedOffset, l.Topic, l.Partition)
			}
		}
		return nil
	})
	runForwarder(t, sides[0].f)
	stopFeed := feedLogs(t, seed, logs, parts, burst, 80, 3, counts)
	cuts := 0
	for start := time.Now(); time.Since(start) < raceFor; {
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		// The fast link flaps (its forwarder resolves again and again);
		// the slow one stays up, its publishes always late.
		cuts += sides[0].px.cutAll()
	}
	stopFeed()
	for _, s := range sides {
		waitForwarded(t, s.f, 60*time.Second, parts)
	}
	moved := 0.0
	for i, s := range sides {
		m := metricValue(t, s.reg, "outpost_upstream_resumes_total", "source", "moved")
		moved += m
		t.Logf("forwarder %d: errors other %v timeout %v disconnected %v", i, metricValue(t, s.reg, "outpost_upstream_publish_errors_total", "kind", "other"),
			metricValue(t, s.reg, "outpost_upstream_publish_errors_total", "kind", "timeout"), metricValue(t, s.reg, "outpost_upstream_publish_errors_total", "kind", "disconnected"))
		t.Logf("forwarder %d: %v records acknowledged, %v resolves after the other one moved the stream",
			i, metricValue(t, s.reg, "outpost_upstream_forwarded_records_total", "topic", "t", "partition", "0")+
				metricValue(t, s.reg, "outpost_upstream_forwarded_records_total", "topic", "t", "partition", "1"), m)
	}
	t.Logf("%d connections cut; records %v", cuts, counts)
	checkExactlyOnce(t, js, "t", counts)
	if moved == 0 {
		t.Error("the forwarders never found the stream moved by the other: they did not race")
	}
}

// TestResumeAcrossBucketMigration: records forwarded into a stream made
// before buckets are under the plain subject; once an operator adds the
// bucket transform (metadata and transform as core/wire makes them), a
// forwarder that has lost its cursor finds where to resume through the
// plain subject and forwards on into buckets, each record once, even past
// the duplicate window. Both pump modes (fenced and not).
func TestResumeAcrossBucketMigration(t *testing.T) {
	for _, fenced := range []bool{false, true} {
		t.Run(map[bool]string{false: "pipelined", true: "fenced"}[fenced], func(t *testing.T) {
			srv := natstest.RunServer(t)
			_, js := srv.Connect()
			ctx := context.Background()
			sc, err := wire.StreamConfig(wire.DefaultPrefix, "t", wire.TopicConfig{})
			if err != nil {
				t.Fatal(err)
			}
			bucketed := sc
			sc.SubjectTransform, sc.Metadata = nil, map[string]string{wire.MetadataTopic: "t", wire.MetadataPrefix: wire.DefaultPrefix}
			sc.Duplicates = 100 * time.Millisecond
			if _, err := js.CreateStream(ctx, sc); err != nil {
				t.Fatal(err)
			}
			l := openLog(t, t.TempDir())
			createTopic(t, l, "t", 1)
			appendN(t, l, "t", 0, 100, 50)
			run := func() {
				lg, _ := newLogger(t)
				cfg := testConfig(srv.URL(), lg)
				cfg.Fenced = fenced
				f, err := New(ctx, cfg, l, openMeta(t, metaPath(t.TempDir()))) // no cursor
				if err != nil {
					t.Fatal(err)
				}
				stop := runForwarder(t, f)
				waitForwarded(t, f, 20*time.Second, 1)
				stop()
			}
			run()
			bucketed.Duplicates = sc.Duplicates
			if _, err := js.UpdateStream(ctx, bucketed); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // past the duplicate window
			appendN(t, l, "t", 0, 50, 50)
			run()
			checkExactlyOnce(t, js, "t", map[int32]int64{0: 150})
		})
	}
}
