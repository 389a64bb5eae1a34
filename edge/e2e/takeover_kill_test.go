package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// TestTakeoverKill (G3 and G6 with kill -9): two edge binaries, pi-a and
// pi-b, replicate each other (acks: all) and forward to an embedded
// JetStream whose duplicate window (100 ms) is far shorter than any
// failover. A device publishes QoS 1 to each node; pi-a is SIGKILLed at a
// random moment (in half the rounds its data directory is deleted too),
// its device fails over to pi-b and publishes on. pi-b takes over pi-a's
// forwarding lease once it expires and forwards pi-a's replicated
// partitions; pi-a restarts (restoring from pi-b when its disk is gone)
// and takes its lease back. At the end the failover goes the other way:
// pi-b dies with its disk and pi-a forwards pi-b's partitions (a double
// failover). After every round every acknowledged message is in the
// stream exactly once, and every origin partition holds offsets
// 0, 1, 2… in stream order. 3 rounds, 12 with OUTPOST_LONG=1; the seed is
// printed and OUTPOST_SEED replays one.
func TestTakeoverKill(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	rounds, rng := killRounds(t, 3, 12)
	// Short timings keep the test fast; OUTPOST_TAKEOVER_DEFAULTS=1 uses
	// the shipped defaults (takeover_after 5s, lease_ttl 15s) to measure
	// the time from a node's death to its partitions reaching the centre.
	leaseTTL, after := 2*time.Second, "300ms"
	if os.Getenv("OUTPOST_TAKEOVER_DEFAULTS") != "" {
		leaseTTL, after = wire.DefaultLeaseTTL, "5s"
	}
	t.Setenv("OUTPOST_REPLICATION_SECRET", "e2e-site-secret-0123456789")
	t.Setenv("OUTPOST_REPLICATION_TAKEOVER_AFTER", after)
	t.Setenv("OUTPOST_REPLICATION_LEASE_TTL", leaseTTL.String())
	t.Setenv("OUTPOST_UPSTREAM_RECONNECT_MAX", "1s")

	srv := natstest.RunServer(t)
	nc, js := srv.Connect()
	natstest.CreateTopicStream(t, js, wire.DefaultPrefix, "telemetry", wire.TopicConfig{DuplicateWindow: 100 * time.Millisecond})
	bin := edgeBinary(t)
	dataA, dataB := t.TempDir(), t.TempDir()
	replA, replB := freePort(t), freePort(t)
	args := func(name, repl, peer, peerRepl string) []string {
		return []string{"-upstream", srv.URL(), "-site", "farm", "-node", name, "-replication", repl, "-peers", peer + "=" + peerRepl}
	}
	startA := func() *proc { return startEdge(t, bin, dataA, args("pi-a", replA, "pi-b", replB)...) }
	startB := func() *proc { return startEdge(t, bin, dataB, args("pi-b", replB, "pi-a", replA)...) }
	kv := func() jetstream.KeyValue {
		var kv jetstream.KeyValue
		waitFor(t, 20*time.Second, func() (err error) {
			kv, err = js.KeyValue(context.Background(), wire.LeaseBucket)
			return err
		})
		return kv
	}
	holder := func(kv jetstream.KeyValue, origin string) string {
		e, err := kv.Get(context.Background(), wire.LeaseKey("farm", origin))
		if err != nil {
			return ""
		}
		var l wire.Lease
		json.Unmarshal(e.Value(), &l)
		return l.Holder
	}
	inSync := func(p *proc, name string) {
		waitFor(t, 30*time.Second, func() error {
			if !strings.Contains(metricsText(t, p.http), "outpost_replica_under_replicated_partitions 0") {
				return fmt.Errorf("%s's partitions are not all in sync yet", name)
			}
			return nil
		})
	}

	a, b := startA(), startB()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pi-a's last log:\n%s", tailLines(a.stderr.String(), 60))
			t.Logf("pi-b's log (forwarding, takeover, peer):\n%s", grepLines(b.stderr.String(), "upstream", "takeover", "peer:", "lease"))
		}
	})
	leases := kv()
	acked := map[int]bool{}
	nextA, nextB := 0, 100_000_000 // dev-a's and dev-b's sequence numbers
	for round := range rounds {
		inSync(a, "pi-a")
		waitFor(t, 20*time.Second, func() error {
			if h := holder(leases, "pi-a"); h != "pi-a" {
				return fmt.Errorf("pi-a's lease is held by %q", h)
			}
			return nil
		})
		pa, err := dialPublisher(a.mqtt, "dev-a", 1+rng.Intn(32))
		if err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, a.stderr)
		}
		pb, err := dialPublisher(b.mqtt, "dev-b", 1+rng.Intn(32))
		if err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, b.stderr)
		}
		var wg sync.WaitGroup
		wg.Go(func() { nextB = pb.run(nextB) })
		after := time.Duration(200+rng.Intn(600)) * time.Millisecond
		timer := time.AfterFunc(after, a.kill)
		nextA = pa.run(nextA)
		timer.Stop()
		a.kill()
		killed := time.Now()
		pa.conn.Close()
		wipe := rng.Intn(2) == 0
		if wipe {
			if err := os.RemoveAll(dataA); err != nil {
				t.Fatal(err)
			}
		}
		// dev-a fails over to pi-b and goes on for a while.
		fa, err := dialPublisher(b.mqtt, "dev-a", 1+rng.Intn(32))
		if err != nil {
			t.Fatalf("round %d: failover: %v\n%s", round, err, b.stderr)
		}
		var fwg sync.WaitGroup
		fwg.Go(func() { nextA = fa.run(nextA) })
		time.Sleep(time.Duration(200+rng.Intn(300)) * time.Millisecond)
		fa.conn.Close()
		pb.conn.Close()
		fwg.Wait()
		wg.Wait()
		n := 0
		for _, p := range []*publisher{pa, fa, pb} {
			p.mu.Lock()
			for _, s := range p.acked {
				acked[s] = true
			}
			n += len(p.acked)
			p.mu.Unlock()
		}
		// pi-b forwards pi-a's partitions once the lease expires.
		var missing int
		waitFor(t, 90*time.Second, func() error {
			got := upstreamSeqs(t, js)
			missing = 0
			for s := range acked {
				if !got[s] {
					missing++
				}
			}
			if missing > 0 {
				return fmt.Errorf("%d acknowledged messages not upstream yet (pi-a's lease held by %q)", missing, holder(leases, "pi-a"))
			}
			return nil
		})
		took := time.Since(killed)
		t.Logf("round %d: killed pi-a after %v (disk wiped: %v); %d acknowledged this round; all upstream %v after the kill (lease TTL %v); pi-a's lease with %q",
			round, after, wipe, n, took.Round(time.Millisecond), leaseTTL, holder(leases, "pi-a"))
		a = startA()
	}
	// Double failover: pi-a died and came back (above); now pi-b dies with
	// its disk, its device fails over to pi-a, and pi-a forwards pi-b's
	// partitions from its replica.
	inSync(a, "pi-a")
	inSync(b, "pi-b")
	pb, err := dialPublisher(b.mqtt, "dev-b", 1+rng.Intn(32))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.stderr)
	}
	timer := time.AfterFunc(time.Duration(200+rng.Intn(600))*time.Millisecond, b.kill)
	nextB = pb.run(nextB)
	timer.Stop()
	b.kill()
	pb.conn.Close()
	if err := os.RemoveAll(dataB); err != nil {
		t.Fatal(err)
	}
	fb, err := dialPublisher(a.mqtt, "dev-b", 1+rng.Intn(32))
	if err != nil {
		t.Fatalf("failover: %v\n%s", err, a.stderr)
	}
	var fwg sync.WaitGroup
	fwg.Go(func() { nextB = fb.run(nextB) })
	time.Sleep(300 * time.Millisecond)
	fb.conn.Close()
	fwg.Wait()
	for _, p := range []*publisher{pb, fb} {
		p.mu.Lock()
		for _, s := range p.acked {
			acked[s] = true
		}
		p.mu.Unlock()
	}
	waitFor(t, 60*time.Second, func() error {
		got := upstreamSeqs(t, js)
		for s := range acked {
			if !got[s] {
				return fmt.Errorf("acknowledged seq %d not upstream yet (pi-b's lease held by %q)", s, holder(leases, "pi-b"))
			}
		}
		if h := holder(leases, "pi-b"); h != "pi-a" {
			return fmt.Errorf("pi-b's lease is held by %q", h)
		}
		return nil
	})
	a.kill()
	got := upstreamSeqs(t, js)
	for s := range acked {
		if !got[s] {
			t.Errorf("acknowledged seq %d is not upstream", s)
		}
	}
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	if !strings.Contains(a.stderr.String(), "taking over forwarding of an unreachable peer's partitions") {
		t.Errorf("pi-a never logged its takeover of pi-b:\n%s", a.stderr)
	}
	for _, p := range []*proc{a, b} {
		if strings.Contains(p.stderr.String(), "level=ERROR") {
			t.Errorf("error lines logged:\n%s", p.stderr)
		}
	}
	nc.Close()
	t.Logf("%d acknowledged, %d upstream (unacknowledged ones included), exactly once and in order", len(acked), len(got))
}

// upstreamSeqs reads the telemetry stream, fails the test unless every
// origin partition holds offsets 0, 1, 2… once each in stream order, and
// returns the sequence numbers the records carry (each at most once).
func upstreamSeqs(t *testing.T, js jetstream.JetStream) map[int]bool {
	t.Helper()
	type key struct {
		node string
		part int32
	}
	next := map[key]int64{}
	seqs := map[int]bool{}
	natstest.EachMsg(t, js, wire.StreamName(wire.DefaultPrefix, "telemetry"), func(msg jetstream.Msg) {
		m, err := wire.Parse(msg.Headers(), msg.Data())
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		k := key{m.Origin.Node, m.Origin.Partition}
		for _, r := range m.Records {
			if r.Offset != next[k] {
				t.Fatalf("%s/%d: offset %d where %d was due (gap, duplicate or reorder)", k.node, k.part, r.Offset, next[k])
			}
			next[k]++
			s, err := strconv.Atoi(strings.TrimPrefix(string(r.Value), "seq-"))
			if err != nil {
				t.Fatalf("unexpected value %q", r.Value)
			}
			if seqs[s] {
				t.Fatalf("seq %d is upstream twice", s)
			}
			seqs[s] = true
		}
	})
	return seqs
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// grepLines returns the lines of s holding any of words (at most 200, the last).
func grepLines(s string, words ...string) string {
	var out []string
	for l := range strings.Lines(s) {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, strings.TrimRight(l, "\n"))
				break
			}
		}
	}
	return strings.Join(out[max(0, len(out)-200):], "\n")
}
