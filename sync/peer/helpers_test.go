package peer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
	"github.com/outpost-edge/outpost/internal/polltest"
	"github.com/outpost-edge/outpost/sync/peer"
)

const testSite = "farm"

var testSecret = []byte("0123456789abcdef-site-secret")

func longTests() bool { return os.Getenv("OUTPOST_LONG") == "1" }

// testNode is one node's state on disk: its own log, its metadata and,
// for a follower, its replica logs. close and reopen simulate a restart.
type testNode struct {
	t    testing.TB
	name string
	dir  string
	log  *log.Log
	meta *meta.Store
	reg  *prometheus.Registry
	m    *peer.Metrics
}

func openNode(t testing.TB, name, dir string) *testNode {
	t.Helper()
	n := &testNode{t: t, name: name, dir: dir}
	n.open()
	t.Cleanup(n.close)
	return n
}

func (n *testNode) open() {
	n.t.Helper()
	var err error
	if n.log, err = log.Open(filepath.Join(n.dir, "log"), log.Config{}); err != nil {
		n.t.Fatal(err)
	}
	if n.meta, err = meta.Open(filepath.Join(n.dir, "meta.db"), meta.Config{}); err != nil {
		n.t.Fatal(err)
	}
	n.reg = prometheus.NewRegistry()
	n.m = peer.NewMetrics(n.reg)
}

func (n *testNode) close() {
	if n.log != nil {
		n.log.Close()
		n.log = nil
	}
	if n.meta != nil {
		n.meta.Close()
		n.meta = nil
	}
}

func (n *testNode) config() peer.Config {
	c := peer.DefaultConfig()
	c.Site, c.Node, c.Secret, c.Store, c.Metrics = testSite, n.name, testSecret, n.meta, n.m
	c.Logger = slog.New(slog.NewTextHandler(testWriter{n.t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", n.name)
	c.MaxWait = 50 * time.Millisecond
	c.IOTimeout = time.Second
	c.ReconnectMin, c.ReconnectMax = 10*time.Millisecond, 200*time.Millisecond
	c.MaxFetchBytes = 64 << 10
	return c
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// runner runs a service until stop, which waits for it.
type runner struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func run(t testing.TB, f func(context.Context) error) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *runner) stop(t testing.TB) {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("service returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("service did not stop within 10s")
		}
	})
}

// startOwner serves n's partitions to followers.
func startOwner(t testing.TB, n *testNode, followers ...string) (*peer.Owner, *runner) {
	t.Helper()
	return startOwnerWith(t, n, nil, followers...)
}

// startOwnerWith also serves the replica logs n keeps (for restores).
func startOwnerWith(t testing.TB, n *testNode, replicas map[string]*log.Log, followers ...string) (*peer.Owner, *runner) {
	t.Helper()
	return startOwnerCfg(t, n, func(c *peer.OwnerConfig) { c.Replicas = replicas }, followers...)
}

// startOwnerCfg lets the test change the owner's config.
func startOwnerCfg(t testing.TB, n *testNode, mod func(*peer.OwnerConfig), followers ...string) (*peer.Owner, *runner) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := peer.OwnerConfig{Config: n.config(), Log: n.log, Listener: ln, Followers: followers}
	mod(&cfg)
	o, err := peer.NewOwner(context.Background(), cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	return o, run(t, o.Run)
}

// replicaLog opens n's replica log of owner.
func (n *testNode) replicaLog(owner string) *log.Log {
	n.t.Helper()
	l, err := log.Open(filepath.Join(n.dir, "replicas", owner), log.Config{})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { l.Close() })
	return l
}

func startFollower(t testing.TB, n *testNode, owner, addr string, replica *log.Log) (*peer.Follower, *runner) {
	t.Helper()
	f, err := peer.NewFollower(peer.FollowerConfig{Config: n.config(), Owner: owner, Address: addr, Log: replica})
	if err != nil {
		t.Fatal(err)
	}
	return f, run(t, f.Run)
}

func createTopic(t testing.TB, l *log.Log, topic string, parts int32) {
	t.Helper()
	if err := l.CreateTopic(topic, log.TopicConfig{Partitions: parts}); err != nil {
		t.Fatal(err)
	}
}

// appendN appends n records of about size bytes, in batches of up to 10,
// numbered by the partition's end so that every record is distinct.
func appendN(t testing.TB, l *log.Log, topic string, part int32, n, size int) {
	t.Helper()
	if err := appendRecords(l, topic, part, n, size); err != nil {
		t.Fatal(err)
	}
}

// appendRecords is appendN for goroutines other than the test's.
func appendRecords(l *log.Log, topic string, part int32, n, size int) error {
	_, err := appendRecordsEnd(l, topic, part, n, size)
	return err
}

// appendRecordsEnd appends like appendRecords and returns the partition's
// end after its last batch.
func appendRecordsEnd(l *log.Log, topic string, part int32, n, size int) (int64, error) {
	var end int64
	p, err := l.Partition(topic, part)
	if err != nil {
		return 0, err
	}
	for n > 0 {
		k := min(n, 10)
		recs := make([]log.Record, k)
		for i := range recs {
			off := p.EndOffset() + int64(i)
			recs[i] = log.Record{
				Timestamp: time.Now().UnixNano(),
				Key:       []byte(fmt.Sprintf("dev-%d", off%7)),
				Value:     bytes.Repeat([]byte{byte(off)}, size),
				Headers:   []log.Header{{Key: "seq", Value: []byte(fmt.Sprint(off))}},
			}
		}
		first, err := p.Append(context.Background(), recs)
		if err != nil {
			return 0, err
		}
		end = first + int64(k)
		n -= k
	}
	return end, nil
}

// checkPrefix asserts that every partition of replica is a prefix of the
// owner's, record by record in the log's encoding, and returns the records
// compared.
func checkPrefix(t testing.TB, owner, replica *log.Log) int64 {
	t.Helper()
	ctx := context.Background()
	var n int64
	for _, ti := range owner.Topics() {
		for _, pi := range ti.Partitions {
			op, err := owner.Partition(ti.Name, pi.Partition)
			if err != nil {
				t.Fatal(err)
			}
			rp, err := replica.Partition(ti.Name, pi.Partition)
			if errors.Is(err, log.ErrNoTopic) {
				continue // not replicated yet: an empty prefix (waitCaughtUp checks it is there in the end)
			}
			if err != nil {
				t.Fatalf("replica lacks %s/%d: %v", ti.Name, pi.Partition, err)
			}
			if rp.EndOffset() > op.EndOffset() {
				t.Fatalf("%s/%d: replica end %d past owner end %d", ti.Name, pi.Partition, rp.EndOffset(), op.EndOffset())
			}
			for off := rp.StartOffset(); off < rp.EndOffset(); {
				a, err := op.Read(ctx, off, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				b, err := rp.Read(ctx, off, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < len(a) && i < len(b) && off < rp.EndOffset(); i++ {
					ea, _ := a[i].MarshalMsg(nil)
					eb, _ := b[i].MarshalMsg(nil)
					if a[i].Offset != off || b[i].Offset != off || !bytes.Equal(ea, eb) {
						t.Fatalf("%s/%d offset %d: replica record differs from the owner's", ti.Name, pi.Partition, off)
					}
					off++
					n++
				}
			}
		}
	}
	return n
}

// waitCaughtUp waits until every replica partition ends where the owner's
// does.
func waitCaughtUp(t testing.TB, owner, replica *log.Log, timeout time.Duration) {
	t.Helper()
	polltest.Until(t, timeout, func() error {
		for _, ti := range owner.Topics() {
			for _, pi := range ti.Partitions {
				op, _ := owner.Partition(ti.Name, pi.Partition)
				rp, err := replica.Partition(ti.Name, pi.Partition)
				if err != nil {
					return err
				}
				if rp.EndOffset() != op.EndOffset() {
					return fmt.Errorf("%s/%d: replica at %d, owner at %d", ti.Name, pi.Partition, rp.EndOffset(), op.EndOffset())
				}
			}
		}
		return nil
	})
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func metric(t testing.TB, n *testNode, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetValue() != labels[i] {
					continue next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// counterValue and gaugeValue read a metric by its label values, in the
// order of the metric's label names sorted (Prometheus' order).
func counterValue(t testing.TB, n *testNode, name string, labels ...string) float64 {
	return metric(t, n, name, labels...)
}

func gaugeValue(t testing.TB, n *testNode, name string, labels ...string) float64 {
	return metric(t, n, name, labels...)
}
