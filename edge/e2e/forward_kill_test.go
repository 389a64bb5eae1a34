package e2e_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

const (
	// fwdTopic is the log topic the publishes land in: "kill/seq" matches
	// no routing rule, so it goes to the default topic, keyed by client id.
	fwdTopic = "telemetry"
	fwdSite  = "farm-k"
	fwdNode  = "pi-k"
	// fwdClients publish concurrently; their ids are fixed, so each keeps
	// its partition across rounds and several partitions are used.
	fwdClients = 6
	// fwdSeqSpan separates the clients' sequence numbers: client c sends
	// c*fwdSeqSpan, c*fwdSeqSpan+1, … (fits an int on 32-bit ARM).
	fwdSeqSpan = 100_000_000
	// fwdDupWindow is far shorter than a restart of the node, so a resend
	// after a kill cannot hide behind the stream's deduplication: only
	// resuming after the stream's last message (G3) gives exactly once.
	// With the production window (2 minutes) a forwarder resuming from its
	// cursor instead passes this test; with this one it fails.
	fwdDupWindow = 100 * time.Millisecond
)

// TestForwardKillRestart: the built edge node forwards to an embedded
// JetStream server and is SIGKILLed at random moments, some while devices
// publish, some while it only drains a backlog built up with forwarding off;
// after the last restart every acknowledged message is in the stream exactly
// once, every partition subject holds offsets 0..end-1 once each in offset
// order, and each holds the record the log holds at that offset (G3).
// After each kill the test waits until the server has stored what the
// killed node had sent (fwdCentre.settle says why).
func TestForwardKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	began := time.Now()
	rounds := 8
	if os.Getenv("OUTPOST_LONG") != "" {
		rounds = 40
	}
	rounds = envInt("OUTPOST_FORWARD_KILL_ROUNDS", rounds)
	seed := int64(envInt("OUTPOST_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("seed %d (replay with OUTPOST_SEED=%d), %d rounds", seed, seed, rounds)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: rerun with OUTPOST_SEED=%d", seed, seed)
		}
	})
	rng := rand.New(rand.NewSource(seed))
	// Debug makes the forwarder log every resume point; a failure prints
	// what each node logged about forwarding.
	t.Setenv("OUTPOST_LOG_LEVEL", "debug")
	var nodes []fwdNodeRun
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				t.Logf("round %d, %s node:\n%s", n.round, n.role, fwdUpstreamLines(n.p))
			}
		}
	})

	srv := natstest.RunServer(t) // JetStream's default sync_interval
	nc, js := srv.Connect()
	up := &fwdCentre{srv: srv, nc: nc, js: js,
		stream: natstest.CreateTopicStream(t, js, wire.DefaultPrefix, fwdTopic, wire.TopicConfig{DuplicateWindow: fwdDupWindow})}
	upstreamArgs := []string{"-upstream", srv.URL(), "-site", fwdSite, "-node", fwdNode}
	bin := edgeBinary(t)
	data := t.TempDir()

	acked := map[int]bool{}
	next := make([]int, fwdClients)
	for c := range next {
		next[c] = c * fwdSeqSpan
	}
	var liveRounds, drainRounds, midDrain int
	for round := range rounds {
		// Every third round drains a backlog; the others publish (and
		// start with whatever backlog the previous kill left).
		if round%3 != 2 {
			liveRounds++
			p := startEdge(t, bin, data, upstreamArgs...)
			nodes = append(nodes, fwdNodeRun{round, "live", p})
			before := up.records(t)
			after := time.Duration(50+rng.Intn(550)) * time.Millisecond
			n, pending := fwdPublish(t, p, rng, next, acked, func(elapsed time.Duration, _ int) bool { return elapsed >= after })
			checkNoErrors(t, round, p)
			up.settle(t)
			t.Logf("round %d: live, killed %v into publishing; %d acknowledged, %d in flight; stream %d -> %d",
				round, after, n, pending, before, up.records(t))
			continue
		}
		drainRounds++
		// A backlog: devices publish while forwarding is off, until enough
		// is acknowledged that the drain takes a while (the ingest rate
		// varies with the machine's fsync latency; time alone would not do).
		p := startEdge(t, bin, data)
		backlog := 2000 + rng.Intn(4000)
		n, _ := fwdPublish(t, p, rng, next, acked, func(elapsed time.Duration, n int) bool { return n >= backlog || elapsed > 5*time.Second })
		checkNoErrors(t, round, p)
		// Forward it and kill the node at a random point of the drain,
		// chosen by the stream's message count.
		p = startEdge(t, bin, data, upstreamArgs...)
		nodes = append(nodes, fwdNodeRun{round, "drain", p})
		total := fwdLogTotal(t, p.http)
		before := up.records(t)
		frac := 0.05 + 0.9*rng.Float64()
		target := before + uint64(frac*float64(total-min(before, total)))
		at := before
		deadline := time.Now().Add(20 * time.Second)
		for at < target && at < total && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // pacing the poll, not synchronising
			at = up.records(t)
		}
		p.kill()
		checkNoErrors(t, round, p)
		up.settle(t)
		// What was in flight at the kill lands during settle, so the stream
		// may end up complete although the node was killed mid-drain.
		if before < at && at < total {
			midDrain++
		}
		t.Logf("round %d: drain, %d acknowledged with forwarding off; killed at %.0f%% of the backlog: stream %d -> %d at the kill (%d once settled) of %d in the log",
			round, n, 100*float64(at-before)/float64(max(total-before, 1)), before, at, up.records(t), total)
	}

	p := startEdge(t, bin, data, upstreamArgs...)
	nodes = append(nodes, fwdNodeRun{rounds, "final", p})
	parts := fwdPartitions(t, p.http)
	waitFor(t, 60*time.Second, func() error { return fwdLagZero(p.http, len(parts)) })
	drained := time.Since(began)
	logVals := map[int32][]string{}
	var total int64
	used := 0
	for part, end := range parts {
		logVals[part] = fwdLogValues(t, p.http, part, end)
		total += end
		if end > 0 {
			used++
		}
	}
	p.kill()
	checkNoErrors(t, rounds, p)
	got := fwdStreamRecords(t, js)
	checkForwarded(t, parts, logVals, got, acked)
	if used < 2 {
		t.Errorf("only %d partition(s) received records; the client ids must spread over several", used)
	}
	if len(acked) == 0 {
		t.Fatal("no message was acknowledged in any round")
	}
	if drainRounds > 0 && midDrain == 0 {
		t.Errorf("no drain round was killed in the middle of its drain (the backlog drained before the kill); the test did not test that")
	}
	t.Logf("%d rounds (%d live, %d drain, %d killed mid-drain); %d acknowledged, %d in the log over %d partitions, all in the stream after %v (checked after %v)",
		rounds, liveRounds, drainRounds, midDrain, len(acked), total, used, drained.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// fwdNodeRun is one run of the node with forwarding on.
type fwdNodeRun struct {
	round int
	role  string
	p     *proc
}

// fwdUpstreamLines returns what an exited node logged about forwarding
// (warnings, errors, connection changes, resume points).
func fwdUpstreamLines(p *proc) string {
	p.kill()
	var b strings.Builder
	for l := range strings.Lines(p.stderr.String()) {
		if strings.Contains(l, "upstream") && !strings.Contains(l, "status report") {
			b.WriteString(l)
		}
	}
	return b.String()
}

// fwdPublish runs the fwdClients publishers against p and SIGKILLs p as
// soon as kill (polled every millisecond with the time since the start and
// the number acknowledged so far) says so. It records the acknowledged
// sequence numbers in acked, moves next on, and returns how many were
// acknowledged and how many were in flight at the kill.
func fwdPublish(t *testing.T, p *proc, rng *rand.Rand, next []int, acked map[int]bool, kill func(elapsed time.Duration, acked int) bool) (n, pending int) {
	t.Helper()
	pubs := make([]*publisher, len(next))
	for c := range pubs {
		pub, err := dialPublisher(p.mqtt, fmt.Sprintf("fwd-%d", c), 1+rng.Intn(64))
		if err != nil {
			p.kill()
			t.Fatalf("client fwd-%d: %v\n%s", c, err, p.stderr)
		}
		pubs[c] = pub
	}
	start := time.Now()
	var wg sync.WaitGroup
	for c, pub := range pubs {
		wg.Go(func() { next[c] = pub.run(next[c]) })
	}
	for {
		n := 0
		for _, pub := range pubs {
			pub.mu.Lock()
			n += len(pub.acked)
			pub.mu.Unlock()
		}
		if kill(time.Since(start), n) {
			break
		}
		select {
		case <-p.exited:
			t.Fatalf("edge exited by itself:\n%s", p.stderr)
		case <-time.After(time.Millisecond):
		}
	}
	p.kill()
	wg.Wait()
	for _, pub := range pubs {
		pub.conn.Close()
		pub.mu.Lock()
		for _, s := range pub.acked {
			acked[s] = true
		}
		n += len(pub.acked)
		pending += len(pub.pending)
		pub.mu.Unlock()
	}
	return n, pending
}

// checkNoErrors fails the test on error lines the node logged; p must have
// exited.
func checkNoErrors(t *testing.T, round int, p *proc) {
	t.Helper()
	if !strings.Contains(p.stderr.String(), "level=ERROR") {
		return
	}
	var lines []string
	for l := range strings.Lines(p.stderr.String()) {
		if strings.Contains(l, "level=ERROR") {
			lines = append(lines, l)
		}
	}
	t.Errorf("round %d: the node logged %d error line(s):\n%s", round, len(lines), strings.Join(lines[:min(len(lines), 10)], ""))
}

// fwdCentre is the test's view of the central side.
type fwdCentre struct {
	srv    *natstest.Server
	nc     *nats.Conn // the test's own connection
	js     jetstream.JetStream
	stream jetstream.Stream
	probes uint64 // probe messages in the stream (see settle)
}

// fwdProbeSubject is in the topic's stream but no partition's subject.
const fwdProbeSubject = "outpost." + fwdTopic + ".test-probe"

// records returns how many forwarded records the stream holds.
func (c *fwdCentre) records(t *testing.T) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := c.stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Msgs - c.probes
}

// settle waits, after a kill, until the server has stored everything the
// killed node's connection had sent: until the server has closed that
// connection (its read loop has queued every message it read), then until
// a probe published to the same stream is acknowledged (the stream takes
// its inbound messages in order, so the killed node's are stored by then).
//
// Why: resuming after the stream's last message cannot see messages the
// server has read but not yet stored. A node restarted before then
// resends them; the stream's duplicate window drops those, and in
// production it (2 minutes) outlasts any restart. This test's window is
// 100 ms so that it cannot hide a wrong resume point, and the embedded
// server, slowed by the race detector on a loaded machine, was seen
// storing a killed node's last ~700 messages over 0.4 s after the kill, after
// the restarted node had already asked for the last message.
func (c *fwdCentre) settle(t *testing.T) {
	t.Helper()
	own, err := c.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() error {
		cz, err := c.srv.NATSServer().Connz(&server.ConnzOptions{})
		if err != nil {
			return err
		}
		for _, ci := range cz.Conns {
			if ci.Cid != own {
				return fmt.Errorf("connection %d (%q) of a killed node still open on the server", ci.Cid, ci.Name)
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.js.Publish(ctx, fwdProbeSubject, nil); err != nil {
		t.Fatalf("probe: %v", err)
	}
	c.probes++
}

// fwdPartitions returns the end offset of every partition of fwdTopic.
func fwdPartitions(t *testing.T, httpAddr string) map[int32]int64 {
	t.Helper()
	var td topicsDoc
	getJSON(t, "http://"+httpAddr+"/v1/topics", &td)
	for _, tp := range td.Topics {
		if tp.Name != fwdTopic {
			continue
		}
		out := map[int32]int64{}
		for _, p := range tp.Partitions {
			if p.StartOffset != 0 {
				t.Fatalf("%s/%d starts at %d: retention deleted records, which this test does not expect", fwdTopic, p.Partition, p.StartOffset)
			}
			out[p.Partition] = p.EndOffset
		}
		return out
	}
	t.Fatalf("the node has no topic %q", fwdTopic)
	return nil
}

func fwdLogTotal(t *testing.T, httpAddr string) uint64 {
	t.Helper()
	var n int64
	for _, end := range fwdPartitions(t, httpAddr) {
		n += end
	}
	return uint64(n)
}

// fwdLagZero reports nil once the node's metrics show every partition of
// fwdTopic forwarded to the end of its log and none paused.
func fwdLagZero(httpAddr string, parts int) error {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET /metrics: %d", resp.StatusCode)
	}
	series := 0
	var behind []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		lag := strings.HasPrefix(line, "outpost_upstream_lag_records{")
		paused := strings.HasPrefix(line, "outpost_upstream_partition_paused{")
		if !(lag || paused) || !strings.Contains(line, `topic="`+fwdTopic+`"`) {
			continue
		}
		if lag {
			series++
		}
		if !strings.HasSuffix(line, " 0") {
			behind = append(behind, line)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if series != parts {
		return fmt.Errorf("%d lag series for %s, want %d", series, fwdTopic, parts)
	}
	if len(behind) > 0 {
		return fmt.Errorf("not forwarded yet: %s", strings.Join(behind, "; "))
	}
	return nil
}

// fwdLogValues reads partition part of fwdTopic from offset 0 to end
// through the API.
func fwdLogValues(t *testing.T, httpAddr string, part int32, end int64) []string {
	t.Helper()
	out := make([]string, 0, end)
	for int64(len(out)) < end {
		var pg page
		getJSON(t, fmt.Sprintf("http://%s/v1/topics/%s/partitions/%d/records?offset=%d&limit=1000", httpAddr, fwdTopic, part, len(out)), &pg)
		if len(pg.Records) == 0 {
			t.Fatalf("log %s/%d: no records at %d before end %d", fwdTopic, part, len(out), end)
		}
		for _, r := range pg.Records {
			if r.Offset != int64(len(out)) {
				t.Fatalf("log %s/%d: offset %d where %d expected", fwdTopic, part, r.Offset, len(out))
			}
			v, err := base64.StdEncoding.DecodeString(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(v))
		}
	}
	return out
}

// fwdRecord is one record as the stream holds it.
type fwdRecord struct {
	streamSeq uint64
	offset    int64
	value     string
}

// fwdStreamRecords reads the whole stream in stream order and returns its
// records by origin partition.
func fwdStreamRecords(t *testing.T, js jetstream.JetStream) map[int32][]fwdRecord {
	t.Helper()
	out := map[int32][]fwdRecord{}
	natstest.EachMsg(t, js, wire.StreamName(wire.DefaultPrefix, fwdTopic), func(m jetstream.Msg) {
		if m.Subject() == fwdProbeSubject {
			return
		}
		md, err := m.Metadata()
		if err != nil {
			t.Fatalf("message metadata: %v", err)
		}
		msg, err := wire.Parse(m.Headers(), m.Data())
		if err != nil {
			t.Fatalf("stream seq %d: %v", md.Sequence.Stream, err)
		}
		if o := msg.Origin; o.Site != fwdSite || o.Node != fwdNode || o.Topic != fwdTopic {
			t.Fatalf("stream seq %d: origin %v", md.Sequence.Stream, o)
		}
		for _, r := range msg.Records {
			out[msg.Origin.Partition] = append(out[msg.Origin.Partition], fwdRecord{md.Sequence.Stream, r.Offset, string(r.Value)})
		}
	})
	return out
}

// checkForwarded compares the stream with the log and the acknowledgements:
// per partition subject, offsets 0..end-1 each exactly once and in offset
// order, each with the log's value at that offset; every acknowledged
// sequence number exactly once.
func checkForwarded(t *testing.T, ends map[int32]int64, logVals map[int32][]string, got map[int32][]fwdRecord, acked map[int]bool) {
	t.Helper()
	for part := range got {
		if _, ok := ends[part]; !ok {
			t.Errorf("the stream holds %d records of partition %d, which the log does not have", len(got[part]), part)
		}
	}
	seen := map[int]int{}
	for part, end := range ends {
		recs := got[part]
		count := make(map[int64]int, len(recs))
		var dup, beyond []int64
		var order, mismatch []string
		for i, r := range recs {
			count[r.offset]++
			if count[r.offset] == 2 {
				dup = append(dup, r.offset)
			}
			if r.offset < 0 || r.offset >= end {
				beyond = append(beyond, r.offset)
			} else if v := logVals[part][r.offset]; r.value != v && len(mismatch) < 10 {
				mismatch = append(mismatch, fmt.Sprintf("offset %d (stream seq %d) is %q, the log has %q", r.offset, r.streamSeq, r.value, v))
			}
			if i > 0 && r.offset <= recs[i-1].offset && len(order) < 10 {
				order = append(order, fmt.Sprintf("offset %d at stream seq %d after offset %d at %d", r.offset, r.streamSeq, recs[i-1].offset, recs[i-1].streamSeq))
			}
			if s, err := strconv.Atoi(strings.TrimPrefix(r.value, "seq-")); err == nil {
				seen[s]++
			} else {
				t.Errorf("%s/%d offset %d: unexpected value %q", fwdTopic, part, r.offset, r.value)
			}
		}
		var missing []int64
		for off := range end {
			if count[off] == 0 {
				missing = append(missing, off)
			}
		}
		name := fmt.Sprintf("%s/%d (log end %d, %d records in the stream)", fwdTopic, part, end, len(recs))
		if len(missing) > 0 {
			t.Errorf("%s: %d offsets missing from the stream: %s", name, len(missing), fwdRuns(missing))
		}
		if len(dup) > 0 {
			t.Errorf("%s: %d offsets in the stream more than once: %s", name, len(dup), fwdRuns(dup))
		}
		if len(beyond) > 0 {
			t.Errorf("%s: %d offsets in the stream beyond the log: %s", name, len(beyond), fwdRuns(beyond))
		}
		if len(order) > 0 {
			t.Errorf("%s: stream order differs from offset order: %s", name, strings.Join(order, "; "))
		}
		if len(mismatch) > 0 {
			t.Errorf("%s: stream and log disagree: %s", name, strings.Join(mismatch, "; "))
		}
	}
	var lost, twice []int64
	for s := range acked {
		if seen[s] == 0 {
			lost = append(lost, int64(s))
		}
	}
	for s, n := range seen {
		if n > 1 {
			twice = append(twice, int64(s))
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged sequence numbers are not in the stream (client c sent c*%d+n): %s", len(lost), fwdSeqSpan, fwdRuns(lost))
	}
	if len(twice) > 0 {
		t.Errorf("%d sequence numbers are in the stream more than once: %s", len(twice), fwdRuns(twice))
	}
}

// fwdRuns summarises numbers as sorted runs, "3..7 12 40..41", for failure
// messages.
func fwdRuns(xs []int64) string {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	var b strings.Builder
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] <= xs[j]+1 {
			j++
		}
		if i == j {
			fmt.Fprintf(&b, "%d ", xs[i])
		} else {
			fmt.Fprintf(&b, "%d..%d ", xs[i], xs[j])
		}
		if b.Len() > 400 {
			b.WriteString("...")
			break
		}
		i = j + 1
	}
	return strings.TrimSpace(b.String())
}
