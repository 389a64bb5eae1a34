package downlink_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
	"github.com/outpost-edge/outpost/sync/downlink"
)

type node struct {
	dir  string
	log  *log.Log
	meta *meta.Store
	s    *downlink.Store
}

func openNode(t *testing.T, dir string) *node {
	t.Helper()
	lg, err := log.Open(filepath.Join(dir, "log"), log.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{wire.CommandLogTopic, wire.CommandStatusTopic} {
		if err := lg.CreateTopic(topic, log.TopicConfig{Partitions: 1}); err != nil {
			t.Fatal(err)
		}
	}
	ms, err := meta.Open(filepath.Join(dir, "meta.db"), meta.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := downlink.DefaultConfig()
	cfg.Site, cfg.Node, cfg.MaxPerDevice, cfg.MaxQueued = "farm-1", "pi-a", 3, 10
	s, err := downlink.Open(context.Background(), cfg, lg, ms)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{dir: dir, log: lg, meta: ms, s: s}
	t.Cleanup(n.close)
	return n
}

func (n *node) close() {
	if n.log != nil {
		n.log.Close()
		n.meta.Close()
		n.log = nil
	}
}

func command(id, device string, ttl time.Duration) wire.Command {
	now := time.Now().UTC()
	return wire.Command{Version: 1, ID: id, Site: "farm-1", Device: device, Topic: "cmd/" + device, QoS: 1, Payload: []byte(id), Created: now, Expires: now.Add(ttl)}
}

// statuses reads the status records of the node's log as "id:status".
func (n *node) statuses(t *testing.T) []string {
	t.Helper()
	p, err := n.log.Partition(wire.CommandStatusTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := p.Read(context.Background(), p.StartOffset(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		var s wire.CommandStatusRecord
		if err := json.Unmarshal(r.Value, &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.ID+":"+string(s.Status)+reason(s.Reason))
	}
	return out
}

func reason(r string) string {
	if r == "" {
		return ""
	}
	return "(" + r + ")"
}

// TestRestartKeepsQueue: commands taken survive a restart in order; the
// finished ones do not come back; a redelivery of any taken id (before or
// after the restart) is dropped.
func TestRestartKeepsQueue(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openNode(t, dir)
	for _, id := range []string{"a1", "a2", "a3"} {
		if err := n.s.Take(ctx, command(id, "dev-a", time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	c, ok, _ := n.s.Next(ctx, "dev-a")
	if !ok || c.ID != "a1" {
		t.Fatalf("next %v %v", c.ID, ok)
	}
	if err := n.s.Finish(ctx, c, wire.StatusDelivered, "", nil); err != nil {
		t.Fatal(err)
	}
	n.close()

	n = openNode(t, dir)
	c, ok, _ = n.s.Next(ctx, "dev-a")
	if !ok || c.ID != "a2" {
		t.Fatalf("after restart next is %q %v, want a2", c.ID, ok)
	}
	for _, id := range []string{"a1", "a2"} {
		if err := n.s.Take(ctx, command(id, "dev-a", time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if snap := n.s.Snapshot(); len(snap) != 1 || len(snap[0].Commands) != 2 {
		t.Fatalf("queue %+v, want a2 a3", snap)
	}
	// The restart restates the at_edge of the pending a2 and a3 (the
	// centre folds a status it has as a no-op).
	want := "[a1:at_edge a2:at_edge a3:at_edge a1:delivered a2:at_edge a3:at_edge]"
	if got := fmt.Sprint(n.statuses(t)); got != want {
		t.Fatalf("status records %s, want %s", got, want)
	}
}

// TestCrashBetweenCommandAndStatus: Take appends the command, then its
// at_edge status; a crash between the two must not leave the centre
// without at_edge (its redelivery of the command is dropped as a
// duplicate). The next open states it, dated when the command was taken.
func TestCrashBetweenCommandAndStatus(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	n := openNode(t, dir)
	c := command("x1", "dev-x", time.Hour)
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	taken := time.Now().Add(-time.Minute)
	p, err := n.log.Partition(wire.CommandLogTopic, 0)
	if err != nil {
		t.Fatal(err)
	}
	// What Take's first append leaves when the node dies before its second.
	if _, err := p.Append(ctx, []log.Record{{Timestamp: taken.UnixNano(), Key: []byte(c.Device), Value: b}}); err != nil {
		t.Fatal(err)
	}
	n.close()

	n = openNode(t, dir)
	if got := fmt.Sprint(n.statuses(t)); got != "[x1:at_edge]" {
		t.Fatalf("status records %s, want [x1:at_edge]", got)
	}
	if err := n.s.Take(ctx, c); err != nil { // the centre's redelivery: dropped
		t.Fatal(err)
	}
	sp, _ := n.log.Partition(wire.CommandStatusTopic, 0)
	recs, err := sp.Read(ctx, 0, 1<<20)
	if err != nil || len(recs) != 1 {
		t.Fatalf("status log: %d records, %v", len(recs), err)
	}
	r, err := wire.DecodeCommandStatusRecord(recs[0].Value)
	if err != nil || !r.Time.Equal(taken.UTC()) {
		t.Fatalf("at_edge dated %v (%v), want the time the command was taken, %v", r.Time, err, taken.UTC())
	}
}

// TestExpiryAndLimits: an expired command is never handed out and ends
// expired; one that arrives expired, or beyond the device's limit, ends at
// once; an answer that overtakes the PUBACK records delivered first.
func TestExpiryAndLimits(t *testing.T) {
	ctx := context.Background()
	n := openNode(t, t.TempDir())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(n.s.Take(ctx, command("e1", "dev-e", 50*time.Millisecond)))
	must(n.s.Take(ctx, command("e2", "dev-e", time.Hour)))
	must(n.s.Take(ctx, command("late", "dev-e", -time.Second)))
	must(n.s.Take(ctx, command("e3", "dev-e", time.Hour)))
	must(n.s.Take(ctx, command("e4", "dev-e", time.Hour))) // beyond max_per_device 3
	time.Sleep(60 * time.Millisecond)
	c, ok, err := n.s.Next(ctx, "dev-e")
	if err != nil || !ok || c.ID != "e2" {
		t.Fatalf("next %q %v %v, want e2 (e1 expired)", c.ID, ok, err)
	}
	must(n.s.Answer(ctx, "farm-1", "dev-e", "e2", wire.StatusSucceeded, []byte(`{"ok":true}`)))
	must(n.s.Finish(ctx, c, wire.StatusDelivered, "", nil)) // the PUBACK after the answer: nothing more
	want := "[e1:at_edge e2:at_edge late:expired(ttl) e3:at_edge e4:rejected(queue_full) e1:expired(ttl) e2:delivered e2:succeeded]"
	if got := fmt.Sprint(n.statuses(t)); got != want {
		t.Fatalf("status records\n%s, want\n%s", got, want)
	}
}
