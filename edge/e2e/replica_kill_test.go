package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/log"
)

// TestReplicaKillOwnerAndFollower runs two edge binaries replicating each
// other (acks: all, policy refuse) while a device publishes QoS 1 to pi-a,
// and SIGKILLs pi-a (the owner) or pi-b (its follower) at random moments,
// restarting it on the same disk. At the end pi-a dies for good and its
// data directory is deleted: pi-b's replica holds every acknowledged
// message exactly once. pi-a then starts on an empty directory, restores
// itself from pi-b, and serves every acknowledged message again. 6 rounds,
// 30 with OUTPOST_LONG=1; the seed is printed and OUTPOST_SEED replays one.
func TestReplicaKillOwnerAndFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	rounds, rng := killRounds(t, 6, 30)
	t.Setenv("OUTPOST_REPLICATION_SECRET", "e2e-site-secret-0123456789")
	t.Setenv("OUTPOST_REPLICATION_POLICY", "refuse")
	bin := edgeBinary(t)
	dataA, dataB := t.TempDir(), t.TempDir()
	replA, replB := freePort(t), freePort(t)
	startA := func() *proc {
		return startEdge(t, bin, dataA, "-site", "farm", "-node", "pi-a", "-replication", replA, "-peers", "pi-b="+replB)
	}
	startB := func() *proc {
		return startEdge(t, bin, dataB, "-site", "farm", "-node", "pi-b", "-replication", replB, "-peers", "pi-a="+replA)
	}
	inSync := func(a *proc) {
		waitFor(t, 20*time.Second, func() error {
			m := metricsText(t, a.http)
			if !strings.Contains(m, "outpost_replica_under_replicated_partitions 0") {
				return fmt.Errorf("pi-a's partitions are not all in sync yet")
			}
			return nil
		})
	}
	a, b := startA(), startB()
	acked := map[int]bool{}
	seq := 0
	for round := range rounds {
		inSync(a)
		pub, err := dialPublisher(a.mqtt, "dev-1", 1+rng.Intn(50))
		if err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, a.stderr)
		}
		after := time.Duration(50+rng.Intn(300)) * time.Millisecond
		victim := "pi-a"
		if rng.Intn(3) == 0 {
			victim = "pi-b"
		}
		kill := a.kill
		if victim == "pi-b" {
			kill = func() { b.kill(); pub.conn.Close() } // the device stops with it
		}
		timer := time.AfterFunc(after, kill)
		seq = pub.run(seq)
		if timer.Stop() {
			kill() // the publisher stopped first (a refusal): kill now
		}
		pub.conn.Close()
		pub.mu.Lock()
		for _, s := range pub.acked {
			acked[s] = true
		}
		t.Logf("round %d: killed %s after %v; %d acknowledged", round, victim, after, len(pub.acked))
		pub.mu.Unlock()
		if victim == "pi-a" {
			a = startA()
		} else {
			b = startB()
		}
	}
	// pi-a dies for good and its disk with it.
	inSync(a)
	a.kill()
	if err := os.RemoveAll(dataA); err != nil {
		t.Fatal(err)
	}
	b.kill()
	replica := openLog(t, filepath.Join(dataB, "replicas", "pi-a"))
	seen := map[int]int{}
	for _, ti := range replica.Topics() {
		for _, pi := range ti.Partitions {
			rp, _ := replica.Partition(ti.Name, pi.Partition)
			for off := rp.StartOffset(); off < rp.EndOffset(); {
				recs, err := rp.Read(context.Background(), off, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					s, err := strconv.Atoi(strings.TrimPrefix(string(r.Value), "seq-"))
					if err != nil {
						t.Fatalf("unexpected value %q", r.Value)
					}
					seen[s]++
					off++
				}
			}
		}
	}
	replica.Close()
	lost := 0
	for s := range acked {
		if seen[s] == 0 {
			lost++
		}
	}
	for s, n := range seen {
		if n > 1 {
			t.Errorf("seq %d stored %d times", s, n)
		}
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged messages missing from the replica after pi-a's disk was lost", lost)
	}
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	t.Logf("%d published, %d acknowledged, %d in pi-b's replica of pi-a", seq, len(acked), len(seen))

	// pi-a comes back on a new disk and restores itself from pi-b.
	b = startB()
	a = startA()
	restored := map[int]int{}
	for _, v := range allValues(t, a.http) {
		s, _ := strconv.Atoi(strings.TrimPrefix(v, "seq-"))
		restored[s]++
	}
	for s, n := range seen {
		if restored[s] != n {
			t.Fatalf("seq %d: %d times in pi-a after the restore, %d in the replica", s, restored[s], n)
		}
	}
	if len(restored) != len(seen) {
		t.Fatalf("pi-a restored %d messages, the replica holds %d", len(restored), len(seen))
	}
	a.kill() // its stderr is complete (and no longer written) once it exited
	if !strings.Contains(a.stderr.String(), "restored this node's partitions from a peer's replica") {
		t.Fatalf("pi-a did not log its restore:\n%s", a.stderr)
	}
}

func metricsText(t *testing.T, httpAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return buf.String()
}

func openLog(t *testing.T, dir string) *log.Log {
	t.Helper()
	l, err := log.Open(dir, log.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
