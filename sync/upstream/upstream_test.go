package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

func TestHappyPath(t *testing.T) {
	for _, mode := range []Mode{ModeRecord, ModeBatch} {
		t.Run(mode.String(), func(t *testing.T) {
			srv := natstest.RunServer(t)
			nc, js := srv.Connect()
			dir := t.TempDir()
			l := openLog(t, dir)
			st := openMeta(t, metaPath(dir))
			topics := map[string]int32{"telemetry": 3, "plant.temps": 2}
			want := map[string]map[int32]int64{}
			total := 0
			for topic, parts := range topics {
				createTopic(t, l, topic, parts)
				createStream(t, js, topic, wire.TopicConfig{})
				want[topic] = map[int32]int64{}
				for p := range parts {
					n := 300 + 100*int(p)
					appendN(t, l, topic, p, n, 100)
					want[topic][p] = int64(n)
					total += n
				}
			}
			statusCh := make(chan *nats.Msg, 64)
			sub, err := nc.ChanSubscribe(wire.StatusSubscription(wire.DefaultPrefix), statusCh)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()

			lg, logs := newLogger(t)
			cfg := testConfig(srv.URL(), lg)
			cfg.Mode = mode
			cfg.MaxBatchRecords = 64
			reg := prometheus.NewRegistry()
			cfg.Registerer = reg
			f, err := New(t.Context(), cfg, l, st)
			if err != nil {
				t.Fatal(err)
			}
			runForwarder(t, f)
			waitForwarded(t, f, 30*time.Second, 5)
			for topic := range topics {
				checkExactlyOnce(t, js, topic, want[topic])
			}
			if got := metricValue(t, reg, "outpost_upstream_forwarded_records_total"); got != float64(total) {
				t.Errorf("forwarded_records_total %v, want %d", got, total)
			}
			if got := metricValue(t, reg, "outpost_upstream_lag_records"); got != 0 {
				t.Errorf("lag_records %v, want 0", got)
			}
			if got := metricValue(t, reg, "outpost_upstream_resumes_total", "source", "log_start"); got != 5 {
				t.Errorf("resumes from log_start %v, want 5", got)
			}

			// Headers: every field of a record survives the trip.
			recs := streamRecords(t, js, "plant.temps")
			orig, err := l.Partition("plant.temps", 1)
			if err != nil {
				t.Fatal(err)
			}
			lr, err := orig.Read(context.Background(), 7, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := recs[1][7]
			if got.Timestamp != lr[0].Timestamp || !bytes.Equal(got.Key, lr[0].Key) || !bytes.Equal(got.Value, lr[0].Value) ||
				got.MQTTTopic != "sensors/plant.temps" || len(got.Headers) != 2 || got.Headers[1].Key != "unit" || string(got.Headers[1].Value) != "C" {
				t.Errorf("record 1/7 upstream %+v, log %+v", got, lr[0])
			}
			if mode == ModeRecord {
				// Record-per-message: plain NATS headers any client can read.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				s, err := js.Stream(ctx, wire.StreamName(wire.DefaultPrefix, "telemetry"))
				if err != nil {
					t.Fatal(err)
				}
				m, err := s.GetLastMsgForSubject(ctx, "outpost.telemetry.*.farm-1.pi-a.2") // any bucket
				if err != nil {
					t.Fatal(err)
				}
				h := m.Header
				if h.Get(wire.HeaderMsgID) != "farm-1/pi-a/telemetry/2/499" || h.Get(wire.HeaderOffset) != "499" ||
					h.Get(wire.HeaderPartition) != "2" || h.Get(wire.HeaderSite) != testSite || h.Get(wire.HeaderMQTTTopic) != "sensors/telemetry" {
					t.Errorf("headers %v", h)
				}
			}

			// Cursors are committed to the store.
			natstest.WaitFor(t, 5*time.Second, func() error {
				c, ok, err := st.Cursor(context.Background(), "upstream", "telemetry", 1)
				if err != nil || !ok || c != 400 {
					return fmt.Errorf("cursor %d %v %v, want 400", c, ok, err)
				}
				return nil
			})
			// Retention is held back exactly to what the stream has not
			// acknowledged.
			if h := holdOf(t, l, "telemetry", 1); h.Offset() != 400 {
				t.Errorf("retention hold at %d, want 400", h.Offset())
			}

			// A status report reaches core's subject with the lag.
			natstest.WaitFor(t, 5*time.Second, func() error {
				select {
				case m := <-statusCh:
					s, err := wire.DecodeStatus(m.Data)
					if err != nil {
						return err
					}
					if len(s.Partitions) != 5 || s.Site != testSite {
						return fmt.Errorf("status %+v", s)
					}
					for _, p := range s.Partitions {
						if p.LagRecords != 0 {
							return fmt.Errorf("status lag %+v", p)
						}
					}
					return nil
				default:
					return errors.New("no status report yet")
				}
			})
			if n := logs.Count("level=ERROR"); n != 0 {
				t.Errorf("%d error lines:\n%s", n, logs.String())
			}
		})
	}
}

// TestLiveAppendsAndRestart forwards while appending, restarts the
// forwarder on the same log and store, and checks it resumes exactly after
// what the stream holds.
func TestLiveAppendsAndRestart(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 2)
	createStream(t, js, "t", wire.TopicConfig{})
	lg, _ := newLogger(t)
	f, err := New(t.Context(), testConfig(srv.URL(), lg), l, st)
	if err != nil {
		t.Fatal(err)
	}
	stop := runForwarder(t, f)
	for range 10 {
		appendN(t, l, "t", 0, 50, 64)
		appendN(t, l, "t", 1, 30, 64)
	}
	waitForwarded(t, f, 20*time.Second, 2)
	stop()
	appendN(t, l, "t", 0, 100, 64)
	f2, err := New(t.Context(), testConfig(srv.URL(), lg), l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f2)
	appendN(t, l, "t", 1, 100, 64)
	waitForwarded(t, f2, 20*time.Second, 2)
	checkExactlyOnce(t, js, "t", map[int32]int64{0: 600, 1: 400})
}

// TestOutageLongerThanDupWindow stops the server mid-stream, keeps
// appending, waits past the duplicate window and restarts the server on the
// same store: exactly once, in order.
func TestOutageLongerThanDupWindow(t *testing.T) {
	for _, mode := range []Mode{ModeRecord, ModeBatch} {
		t.Run(mode.String(), func(t *testing.T) { testOutage(t, mode) })
	}
}

func testOutage(t *testing.T, mode Mode) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 2)
	createStream(t, js, "t", wire.TopicConfig{DuplicateWindow: time.Second})
	lg, logs := newLogger(t)
	cfg := testConfig(srv.URL(), lg)
	cfg.Mode = mode
	cfg.MaxBatchRecords = 30
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)

	ctx, cancel := context.WithCancel(context.Background())
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		for i := 0; i < 150 && ctx.Err() == nil; i++ {
			appendN(t, l, "t", int32(i%2), 20, 100)
			time.Sleep(10 * time.Millisecond) // pacing of the producer, not synchronisation
		}
	}()
	defer cancel()
	natstest.WaitFor(t, 10*time.Second, func() error {
		if lag := f.Lag(); len(lag) < 2 || lag[0].ForwardedOffset < 100 || lag[1].ForwardedOffset < 100 {
			return fmt.Errorf("forwarded %+v", lag)
		}
		return nil
	})
	srv.Stop()
	stoppedAt := time.Now()
	natstest.WaitFor(t, 10*time.Second, func() error {
		if metricValue(t, reg, "outpost_upstream_connected") != 0 {
			return errors.New("still connected")
		}
		return nil
	})
	// The outage must outlast the duplicate window (1 s): scenario time,
	// not synchronisation.
	time.Sleep(time.Until(stoppedAt.Add(1500 * time.Millisecond)))
	srv.Start()
	<-appended
	waitForwarded(t, f, 30*time.Second, 2)
	checkExactlyOnce(t, js, "t", map[int32]int64{0: 1500, 1: 1500})
	if got := metricValue(t, reg, "outpost_upstream_reconnects_total"); got < 1 {
		t.Errorf("reconnects_total %v, want >= 1", got)
	}
	if n := logs.Count("upstream: disconnected"); n != 1 {
		t.Errorf("logged the disconnect %d times, want once:\n%s", n, logs.String())
	}
}

// TestTopicCreatedLater: a topic created while the forwarder runs is
// picked up.
func TestTopicCreatedLater(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	lg, _ := newLogger(t)
	cfg := testConfig(srv.URL(), lg)
	cfg.CreateStreams = true
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	createTopic(t, l, "late", 2)
	appendN(t, l, "late", 1, 10, 10)
	waitForwarded(t, f, 10*time.Second, 2)
	checkExactlyOnce(t, js, "late", map[int32]int64{0: 0, 1: 10})
}

// TestLiveFirst drains a big backlog in one topic while live records arrive
// on another; the live records' end-to-end delay stays bounded.
func TestLiveFirst(t *testing.T) {
	backlog := 100_000
	if longTests() {
		backlog = 1_000_000
	}
	for _, bw := range []int64{0, 4 << 20} {
		t.Run(fmt.Sprintf("bandwidth=%d", bw), func(t *testing.T) {
			srv := natstest.RunServer(t)
			nc, js := srv.Connect()
			dir := t.TempDir()
			l := openLog(t, dir)
			st := openMeta(t, metaPath(dir))
			createTopic(t, l, "bulk", 1)
			createTopic(t, l, "live", 1)
			createStream(t, js, "bulk", wire.TopicConfig{})
			createStream(t, js, "live", wire.TopicConfig{})
			appendN(t, l, "bulk", 0, backlog, 100)

			delays := make(chan time.Duration, 10000)
			sub, err := nc.Subscribe("outpost.live.>", func(m *nats.Msg) {
				msg, err := wire.ParseMsg(m)
				if err != nil {
					return
				}
				delays <- time.Since(time.Unix(0, msg.Records[0].Timestamp))
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()

			lg, _ := newLogger(t)
			cfg := testConfig(srv.URL(), lg)
			cfg.BandwidthBytesPerSec = bw
			f, err := New(t.Context(), cfg, l, st)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			runForwarder(t, f)
			live, err := l.Partition("live", 0)
			if err != nil {
				t.Fatal(err)
			}
			sent := 0
			for time.Since(start) < 3*time.Second {
				if _, err := live.Append(context.Background(), []log.Record{{Timestamp: time.Now().UnixNano(), Value: []byte("live")}}); err != nil {
					t.Fatal(err)
				}
				sent++
				time.Sleep(20 * time.Millisecond) // the live producer's pace
			}
			var all []time.Duration
			natstest.WaitFor(t, 10*time.Second, func() error {
				for {
					select {
					case d := <-delays:
						all = append(all, d)
						continue
					default:
					}
					break
				}
				if len(all) < sent {
					return fmt.Errorf("%d of %d live records arrived", len(all), sent)
				}
				return nil
			})
			lag := f.Lag()
			p50, p99, worst := percentiles(all)
			t.Logf("backlog %d records, bandwidth cap %d B/s: %d live records, delay p50 %v p99 %v max %v; backlog forwarded %d in %v",
				backlog, bw, len(all), p50, p99, worst, lag[0].ForwardedOffset, time.Since(start).Round(time.Millisecond))
			if worst > 5*time.Second {
				t.Errorf("live delay max %v, want < 5s", worst)
			}
		})
	}
}

func percentiles(ds []time.Duration) (p50, p99, worst time.Duration) {
	s := append([]time.Duration(nil), ds...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s) == 0 {
		return
	}
	return s[len(s)/2], s[len(s)*99/100], s[len(s)-1]
}
