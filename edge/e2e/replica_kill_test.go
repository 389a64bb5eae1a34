package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
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
// other (acks: local) while a device publishes QoS 1 to pi-a, and SIGKILLs
// pi-a (the owner) or pi-b (its follower) at random moments, restarting
// it on the same disk. Afterwards pi-b's replica of pi-a is a
// record-for-record copy of pi-a's log, and every acknowledged message is
// in both exactly once. 6 rounds, 30 with OUTPOST_LONG=1; the seed is
// printed and OUTPOST_SEED replays one.
func TestReplicaKillOwnerAndFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	rounds := 6
	if os.Getenv("OUTPOST_LONG") != "" {
		rounds = 30
	}
	seed := int64(envInt("OUTPOST_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("seed %d (replay with OUTPOST_SEED=%d), %d rounds", seed, seed, rounds)
	rng := rand.New(rand.NewSource(seed))
	t.Setenv("OUTPOST_REPLICATION_SECRET", "e2e-site-secret-0123456789")
	bin := edgeBinary(t)
	dataA, dataB := t.TempDir(), t.TempDir()
	replA, replB := freePort(t), freePort(t)
	startA := func() *proc {
		return startEdge(t, bin, dataA, "-site", "farm", "-node", "pi-a", "-replication", replA, "-peers", "pi-b="+replB)
	}
	startB := func() *proc {
		return startEdge(t, bin, dataB, "-site", "farm", "-node", "pi-b", "-replication", replB, "-peers", "pi-a="+replA)
	}
	a, b := startA(), startB()
	acked := map[int]bool{}
	seq := 0
	for round := range rounds {
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
		timer.Stop()
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
	// Both up: wait until pi-b's replica holds pi-a's whole log.
	waitFor(t, 30*time.Second, func() error {
		var want, got int64
		var td topicsDoc
		getJSON(t, "http://"+a.http+"/v1/topics", &td)
		for _, tp := range td.Topics {
			for _, p := range tp.Partitions {
				want += p.EndOffset
			}
		}
		resp, err := http.Get("http://" + b.http + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		for _, line := range strings.Split(buf.String(), "\n") {
			if rest, ok := strings.CutPrefix(line, `outpost_replica_end_offset{owner="pi-a"`); ok {
				v, _ := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
				got += int64(v)
			}
		}
		if got != want {
			return fmt.Errorf("replica holds %d records, owner %d", got, want)
		}
		return nil
	})
	a.kill()
	b.kill()
	owner := openLog(t, filepath.Join(dataA, "log"))
	replica := openLog(t, filepath.Join(dataB, "replicas", "pi-a"))
	seen := map[int]int{}
	for _, ti := range owner.Topics() {
		for _, pi := range ti.Partitions {
			op, _ := owner.Partition(ti.Name, pi.Partition)
			rp, err := replica.Partition(ti.Name, pi.Partition)
			if err != nil {
				t.Fatal(err)
			}
			if rp.EndOffset() != op.EndOffset() {
				t.Fatalf("%s/%d: replica ends at %d, owner at %d", ti.Name, pi.Partition, rp.EndOffset(), op.EndOffset())
			}
			for off := int64(0); off < op.EndOffset(); {
				x, err := op.Read(context.Background(), off, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				y, err := rp.Read(context.Background(), off, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < len(x) && i < len(y); i++ {
					ex, _ := x[i].MarshalMsg(nil)
					ey, _ := y[i].MarshalMsg(nil)
					if !bytes.Equal(ex, ey) {
						t.Fatalf("%s/%d offset %d: replica differs from owner", ti.Name, pi.Partition, off)
					}
					s, err := strconv.Atoi(strings.TrimPrefix(string(y[i].Value), "seq-"))
					if err != nil {
						t.Fatalf("unexpected value %q", y[i].Value)
					}
					seen[s]++
					off++
				}
			}
		}
	}
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
		t.Fatalf("%d acknowledged messages missing from the replica", lost)
	}
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
	t.Logf("%d published, %d acknowledged, %d in owner and replica alike", seq, len(acked), len(seen))
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
