package sites

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/provision"
	"github.com/outpost-edge/outpost/core/wire"
)

func TestReportAt(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ForgetAfter = time.Hour
	r, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }

	at := now.Add(-10 * time.Minute)
	if err := r.ReportAt(status("s", "a", 5), at); err != nil {
		t.Fatal(err)
	}
	n := r.Sites()[0].Nodes[0]
	if !n.LastContact.Equal(at) || n.LastContactAgeSeconds != 600 || !n.Stale || n.LagRecords != 5 {
		t.Fatalf("restored node %+v, want last contact %v, 600 s old, stale, lag 5", n, at)
	}
	// An older report does not replace a newer one, whatever the order.
	if err := r.ReportAt(status("s", "a", 9), at.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := r.Sites()[0].Nodes[0]; n.LagRecords != 5 || !n.LastContact.Equal(at) {
		t.Fatalf("older report replaced a newer one: %+v", n)
	}
	if err := r.Report(status("s", "a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := r.ReportAt(status("s", "a", 9), at); err != nil {
		t.Fatal(err)
	}
	if n := r.Sites()[0].Nodes[0]; n.LagRecords != 1 || !n.LastContact.Equal(now) || n.Stale {
		t.Fatalf("restored report replaced a live one: %+v", n)
	}
	// Older than forget_after: a forgotten node stays forgotten.
	if err := r.ReportAt(status("s", "gone", 1), now.Add(-time.Hour-time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := r.Sites(); len(got[0].Nodes) != 1 {
		t.Fatalf("forgotten node resurrected: %+v", got)
	}
	if _, held := r.nodes[nodeKey{"s", "gone"}]; held {
		t.Fatal("forgotten node's report taken (it holds a max_nodes slot until the next sweep)")
	}
	// A server clock ahead of core's counts as now (no negative ages).
	if err := r.ReportAt(status("s", "b", 1), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, n := range r.Sites()[0].Nodes {
		if n.LastContactAgeSeconds < 0 || n.LastContact.After(now) {
			t.Fatalf("node %s in the future: %+v", n.Node, n)
		}
	}
}

// TestForgottenBetweenSweeps: a node past forget_after leaves the view at
// once, not at the next sweep.
func TestForgottenBetweenSweeps(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ForgetAfter = 10 * time.Second
	cfg.MaxNodes = 1
	r, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 4, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	if err := r.Report(status("s", "a", 1)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10*time.Second + time.Millisecond)
	r.nextSweep = now.Add(time.Hour) // as if a sweep had just run
	if got := r.Sites(); len(got) != 0 {
		t.Fatalf("forgotten node still in view: %+v", got)
	}
	// max_nodes counts it no more either.
	if err := r.Report(status("s", "b", 1)); err != nil {
		t.Fatalf("room after forgetting, but: %v", err)
	}
}

// statusStream creates the status stream as core does.
func statusStream(t *testing.T, js jetstream.JetStream, s provision.StatusStream) jetstream.Stream {
	t.Helper()
	p, err := provision.New(js, provision.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, _, err := p.EnsureStatusStream(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRestore(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := statusStream(t, js, provision.StatusStream{MaxAge: time.Hour, MaxNodes: 1000, Replicas: 1})

	newReg := func() (*Registry, *prometheus.Registry) {
		reg := prometheus.NewPedanticRegistry()
		r, err := New(DefaultConfig(), nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		return r, reg
	}
	r, _ := newReg()
	if n, err := r.Restore(ctx, st); err != nil || n != 0 {
		t.Fatalf("restore of an empty stream: %d, %v", n, err)
	}

	// 300 nodes; pi-0 reports twice (the stream keeps only the second);
	// one report is garbage, one names another node than its subject.
	const nodes = 300
	for i := range nodes {
		if err := wire.PublishStatus(nc, wire.DefaultPrefix, status("farm-"+fmt.Sprint(i%7), fmt.Sprintf("pi-%d", i), int64(i%50))); err != nil {
			t.Fatal(err)
		}
	}
	if err := wire.PublishStatus(nc, wire.DefaultPrefix, status("farm-0", "pi-0", 42)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(wire.StatusSubject(wire.DefaultPrefix, "farm-x", "pi-x"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	bad, _ := wire.EncodeStatus(status("farm-x", "pi-z", 1))
	if err := nc.Publish(wire.StatusSubject(wire.DefaultPrefix, "farm-x", "pi-y"), bad); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != nodes+2 {
			return fmt.Errorf("status stream holds %d messages, want %d", info.State.Msgs, nodes+2)
		}
		return nil
	})
	stored, err := st.GetLastMsgForSubject(ctx, wire.StatusSubject(wire.DefaultPrefix, "farm-0", "pi-0"))
	if err != nil {
		t.Fatal(err)
	}

	r, reg := newReg()
	start := time.Now()
	n, err := r.Restore(ctx, st)
	if err != nil || n != nodes {
		t.Fatalf("restored %d, %v; want %d", n, err, nodes)
	}
	t.Logf("restored %d nodes in %v", n, time.Since(start))
	if got := counterValue(t, reg, "outpost_core_status_reports_total", "restored"); got != nodes {
		t.Fatalf("restored counter %v", got)
	}
	if got := counterValue(t, reg, "outpost_core_status_reports_total", "invalid"); got != 2 {
		t.Fatalf("invalid counter %v", got)
	}
	count := 0
	for _, s := range r.Sites() {
		for _, nd := range s.Nodes {
			count++
			if nd.Node == "pi-0" {
				if nd.LagRecords != 42 || !nd.LastContact.Equal(stored.Time.UTC()) {
					t.Fatalf("pi-0 restored as %+v; want lag 42, last contact %v (stored)", nd, stored.Time.UTC())
				}
			}
		}
	}
	if count != nodes {
		t.Fatalf("view has %d nodes, want %d", count, nodes)
	}

	// A core whose clock is past forget_after for every stored report
	// brings none of them back.
	r, reg = newReg()
	r.now = func() time.Time { return time.Now().Add(DefaultConfig().ForgetAfter + time.Minute) }
	if n, err := r.Restore(ctx, st); err != nil || n != 0 || len(r.Sites()) != 0 {
		t.Fatalf("restored %d forgotten nodes (%v): %+v", n, err, r.Sites())
	}
	if got := counterValue(t, reg, "outpost_core_status_reports_total", "outdated"); got != nodes {
		t.Fatalf("outdated counter %v", got)
	}

	// max_nodes holds for restored nodes too.
	cfg := DefaultConfig()
	cfg.MaxNodes = 10
	r, err = New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.Restore(ctx, st); err != nil || n != 10 {
		t.Fatalf("restored %d with max_nodes 10 (%v)", n, err)
	}
}

// BenchmarkRestore: core start with 10,000 nodes (the default max_nodes)
// of 8 partitions each in the status stream.
func BenchmarkRestore(b *testing.B) {
	srv := natstest.RunServer(b)
	nc, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := provision.New(js, provision.DefaultConfig(), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	const nodes = 10000
	st, _, err := p.EnsureStatusStream(ctx, provision.StatusStream{MaxAge: time.Hour, MaxNodes: nodes, Replicas: 1})
	if err != nil {
		b.Fatal(err)
	}
	for i := range nodes {
		rpt := wire.Status{Site: fmt.Sprintf("site-%d", i/3), Node: fmt.Sprintf("pi-%d", i%3), Time: time.Now()}
		for part := range int32(8) {
			rpt.Partitions = append(rpt.Partitions, wire.PartitionStatus{Topic: "telemetry", Partition: part, EndOffset: 1000, ForwardedOffset: 900, LagRecords: 100, LagBytes: 12345})
		}
		if err := wire.PublishStatus(nc, wire.DefaultPrefix, rpt); err != nil {
			b.Fatal(err)
		}
	}
	natstest.WaitFor(b, time.Minute, func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != nodes {
			return fmt.Errorf("%d of %d reports stored", info.State.Msgs, nodes)
		}
		return nil
	})
	b.ResetTimer()
	for range b.N {
		r, err := New(DefaultConfig(), nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := r.Restore(ctx, st); err != nil || n != nodes {
			b.Fatalf("restored %d, %v", n, err)
		}
	}
}
