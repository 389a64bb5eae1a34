package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
	"github.com/outpost-edge/outpost/internal/buftest"
)

const testSite, testNode = "farm-1", "pi-a"

// openLog opens a real log in dir. SyncInterval: a SIGKILL keeps the page
// cache, which is all the crash test needs, and the tests stay fast.
func openLog(t testing.TB, dir string) *log.Log {
	t.Helper()
	cfg := log.DefaultConfig()
	cfg.Sync = log.SyncInterval
	cfg.SyncInterval = 50 * time.Millisecond
	cfg.SegmentMaxBytes = 4 << 20
	l, err := log.Open(dir, cfg)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func openMeta(t testing.TB, path string) *meta.Store {
	t.Helper()
	cfg := meta.DefaultConfig()
	cfg.Timeout = 5 * time.Second
	s, err := meta.Open(path, cfg)
	if err != nil {
		t.Fatalf("open meta: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func createTopic(t testing.TB, l *log.Log, topic string, parts int32) {
	t.Helper()
	if err := l.CreateTopic(topic, log.TopicConfig{Partitions: parts}); err != nil {
		t.Fatalf("create topic: %v", err)
	}
}

// feedLogs appends the same records to every log (a node and its peer's
// replica of it) until the returned stop is called: partition i%parts gets
// 1–burst records of size bytes, then the feeder pauses 1–maxPause ms.
// stop waits for the feeder and adds what each partition got to counts.
func feedLogs(t testing.TB, seed int64, logs []*log.Log, parts, burst, size, maxPause int, counts map[int32]int64) (stop func()) {
	fed := map[int32]int64{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			part := int32(i % parts)
			n := 1 + r.IntN(burst)
			for _, l := range logs {
				appendN(t, l, "t", part, n, size)
			}
			fed[part] += int64(n)
			time.Sleep(time.Duration(1+r.IntN(maxPause)) * time.Millisecond)
		}
	})
	return func() {
		close(done)
		wg.Wait()
		for part, n := range fed {
			counts[part] += n
		}
	}
}

// appendN appends n records to one partition, in batches. Values are
// "topic/partition/offset" padded to size bytes, so a reader can check the
// content.
func appendN(t testing.TB, l *log.Log, topic string, part int32, n, size int) {
	t.Helper()
	p, err := l.Partition(topic, part)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for done := 0; done < n; {
		k := min(n-done, 500)
		first := p.EndOffset()
		recs := make([]log.Record, k)
		for i := range recs {
			recs[i] = testRecord(topic, part, first+int64(i), size)
		}
		if _, err := p.Append(ctx, recs); err != nil {
			t.Fatalf("append: %v", err)
		}
		done += k
	}
}

func testRecord(topic string, part int32, off int64, size int) log.Record {
	v := []byte(fmt.Sprintf("%s/%d/%d/", topic, part, off))
	for len(v) < size {
		v = append(v, 'x')
	}
	return log.Record{
		Timestamp: time.Now().UnixNano(),
		Key:       []byte("dev-" + strconv.Itoa(int(off%7))),
		Value:     v,
		Headers:   []log.Header{{Key: wire.RecordHeaderMQTTTopic, Value: []byte("sensors/" + topic)}, {Key: "unit", Value: []byte("C")}},
	}
}

// testConfig is a Config for srv with fast timings.
func testConfig(url string, lg *slog.Logger) Config {
	cfg := DefaultConfig()
	cfg.URL = url
	cfg.Site, cfg.Node = testSite, testNode
	cfg.ReconnectMin = 20 * time.Millisecond
	cfg.ReconnectMax = 300 * time.Millisecond
	cfg.AckTimeout = 2 * time.Second
	cfg.StatusInterval = 200 * time.Millisecond
	cfg.CursorInterval = 50 * time.Millisecond
	cfg.Logger = lg
	return cfg
}

// runForwarder starts f.Run and returns a stop function (also run at
// cleanup) that cancels it and waits for it.
func runForwarder(t testing.TB, f *Forwarder) (stop func()) {
	t.Helper()
	return runFor(t, f.Run)
}

// runFor runs fn until the returned stop is called (or the test ends),
// then waits for it and fails t on its error.
func runFor(t testing.TB, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return within 20s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func createStream(t testing.TB, js jetstream.JetStream, topic string, tc wire.TopicConfig) jetstream.Stream {
	t.Helper()
	return natstest.CreateTopicStream(t, js, wire.DefaultPrefix, topic, tc)
}

// streamRecords reads every message of topic's stream in stream order and
// returns the origin offsets per partition (several per batch message).
func streamRecords(t testing.TB, js jetstream.JetStream, topic string) map[int32][]wire.Record {
	t.Helper()
	out := map[int32][]wire.Record{}
	natstest.EachMsg(t, js, wire.StreamName(wire.DefaultPrefix, topic), func(m jetstream.Msg) {
		msg, err := wire.Parse(m.Headers(), m.Data())
		if err != nil {
			t.Fatalf("parse message: %v", err)
		}
		if msg.Origin.Site != testSite || msg.Origin.Node != testNode || msg.Origin.Topic != topic {
			t.Fatalf("origin %v", msg.Origin)
		}
		for _, r := range msg.Records {
			r.Value = bytes.Clone(r.Value)
			out[msg.Origin.Partition] = append(out[msg.Origin.Partition], r)
		}
	})
	return out
}

// checkExactlyOnce asserts that the stream holds, for every partition in
// want, exactly offsets 0..want-1 in order, with the values appendN wrote.
func checkExactlyOnce(t testing.TB, js jetstream.JetStream, topic string, want map[int32]int64) {
	t.Helper()
	got := streamRecords(t, js, topic)
	for part, n := range want {
		recs := got[part]
		if int64(len(recs)) != n {
			t.Errorf("%s/%d: stream holds %d records, want %d (%s)", topic, part, len(recs), n, describeOffsets(recs))
			continue
		}
		for i, r := range recs {
			if r.Offset != int64(i) {
				t.Errorf("%s/%d: record %d of the stream has offset %d (%s)", topic, part, i, r.Offset, describeOffsets(recs))
				break
			}
			if prefix := fmt.Sprintf("%s/%d/%d/", topic, part, i); !bytes.HasPrefix(r.Value, []byte(prefix)) {
				t.Errorf("%s/%d: offset %d has value %q, want prefix %q", topic, part, i, r.Value, prefix)
				break
			}
		}
	}
	for part := range got {
		if _, ok := want[part]; !ok {
			t.Errorf("%s: stream holds records of unexpected partition %d", topic, part)
		}
	}
}

// describeOffsets summarises offsets as runs, for failure messages.
func describeOffsets(recs []wire.Record) string {
	var b strings.Builder
	for i := 0; i < len(recs); {
		j := i
		for j+1 < len(recs) && recs[j+1].Offset == recs[j].Offset+1 {
			j++
		}
		fmt.Fprintf(&b, "%d..%d ", recs[i].Offset, recs[j].Offset)
		if b.Len() > 400 {
			b.WriteString("...")
			break
		}
		i = j + 1
	}
	return b.String()
}

// streamMsgs is the number of messages in topic's stream.
func streamMsgs(ctx context.Context, js jetstream.JetStream, topic string) (uint64, error) {
	st, err := js.Stream(ctx, wire.StreamName(wire.DefaultPrefix, topic))
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// waitForwarded waits until every partition of f is forwarded to the end
// of its log.
func waitForwarded(t testing.TB, f *Forwarder, timeout time.Duration, parts int) {
	t.Helper()
	natstest.WaitFor(t, timeout, func() error {
		lags := f.Lag()
		if len(lags) < parts {
			return fmt.Errorf("%d partitions known, want %d", len(lags), parts)
		}
		for _, l := range lags {
			if l.ForwardedOffset != l.EndOffset {
				return fmt.Errorf("%s/%d forwarded to %d of %d (error %q)", l.Topic, l.Partition, l.ForwardedOffset, l.EndOffset, l.Error)
			}
		}
		return nil
	})
}

// logBuf collects log output for assertions.
type logBuf = buftest.Buffer

func newLogger(t testing.TB) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelInfo})), lb
}

// metricValue sums the samples of a metric family whose labels include
// the given pairs.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func metaPath(dir string) string { return filepath.Join(dir, "meta.db") }

// longTests reports whether OUTPOST_LONG=1 asks for the long variants.
func longTests() bool { return os.Getenv("OUTPOST_LONG") == "1" }

var errNotYet = errors.New("not yet")

var _ metaStore = (*meta.Store)(nil)

// holdOf returns the forwarder's retention hold on a partition (the hold is
// named after Config.CursorName, "upstream" in these tests).
func holdOf(tb testing.TB, l *log.Log, topic string, partition int32) *log.Hold {
	tb.Helper()
	p, err := l.Partition(topic, partition)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := p.Hold("upstream")
	if err != nil {
		tb.Fatal(err)
	}
	return h
}
