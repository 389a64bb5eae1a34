package e2e_test

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// arrivals orders the lines all consumers print, as the test reads them.
var arrivals atomic.Int64

// consumer is one `core consume -json` process and what it printed.
type consumer struct {
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []consumed
	stderr strings.Builder
	done   chan struct{}
}

type consumed struct {
	at        int64  // order of arrival across all consumers
	Node      string `json:"node"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Bucket    int    `json:"bucket"`
	ValueText string `json:"value_text"`
}

func startConsumer(t *testing.T, bin, url, name string) *consumer {
	t.Helper()
	c := &consumer{name: name, done: make(chan struct{})}
	c.cmd = exec.Command(bin, "consume", "-nats", url, "-group", "g", "-topic", "telemetry", "-json",
		"-member", name, "-session-timeout", "2s")
	c.cmd.Stderr = &lockedWriter{w: &c.stderr}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l consumed
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("%s printed %q: %v", name, sc.Text(), err)
				continue
			}
			l.at = arrivals.Add(1)
			c.mu.Lock()
			c.lines = append(c.lines, l)
			c.mu.Unlock()
		}
		c.cmd.Wait()
	}()
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done })
	return c
}

func (c *consumer) signal(sig syscall.Signal) {
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
	}
}

// TestConsumeGroupKill: three `core consume` processes share a group on
// 16 buckets while records arrive; one is SIGKILLed mid-stream. Its
// buckets move to the others within the session timeout plus a few
// seconds; every record is printed at least once; a record printed twice
// was first printed by the killed member (its uncommitted tail); each
// process prints an origin partition's records in offset order. The
// others leave with SIGTERM (commit and leave), and a consumer started
// afterwards prints only the records published since.
func TestConsumeGroupKill(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	seed := int64(envInt("OUTPOST_SEED", int(time.Now().UnixNano()%1e9)))
	t.Logf("seed %d (replay with OUTPOST_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	natstest.CreateTopicStream(t, js, wire.DefaultPrefix, "telemetry", wire.TopicConfig{})
	bin := coreBinary(t)
	type key struct {
		node   string
		part   int32
		offset int64
	}
	next := map[wire.Origin]int64{}
	var origins []wire.Origin
	for n := range 3 {
		for p := range int32(6) {
			origins = append(origins, wire.Origin{Site: "farm", Node: fmt.Sprintf("pi-%d", n), Topic: "telemetry", Partition: p})
		}
	}
	publish := func(rounds int) {
		for range rounds {
			for _, o := range origins {
				m, _ := wire.NewMsg(wire.DefaultPrefix, o, wire.Record{Offset: next[o], Value: []byte(fmt.Sprintf("%s/%d/%d", o.Node, o.Partition, next[o]))})
				if _, err := js.PublishMsgAsync(m); err != nil {
					t.Fatal(err)
				}
				next[o]++
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(10 * time.Second):
			t.Fatal("publishes not acknowledged")
		}
	}
	publish(100)
	cs := []*consumer{startConsumer(t, bin, srv.URL(), "c1"), startConsumer(t, bin, srv.URL(), "c2"), startConsumer(t, bin, srv.URL(), "c3")}
	total := func() int {
		n := 0
		for _, c := range cs {
			c.mu.Lock()
			n += len(c.lines)
			c.mu.Unlock()
		}
		return n
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				publish(1)
			}
		}
	})
	// Kill c2 once it is well into the stream.
	waitFor(t, 30*time.Second, func() error {
		if n := total(); n < 1000+rng.Intn(800) {
			return fmt.Errorf("%d printed", n)
		}
		return nil
	})
	cs[1].signal(syscall.SIGKILL)
	killed := time.Now()
	time.Sleep(time.Duration(500+rng.Intn(1500)) * time.Millisecond)
	close(stop)
	wg.Wait()
	type print struct {
		by string
		at int64
	}
	all := func() map[key][]print {
		got := map[key][]print{}
		for _, c := range cs {
			c.mu.Lock()
			for _, l := range c.lines {
				k := key{l.Node, l.Partition, l.Offset}
				got[k] = append(got[k], print{c.name, l.at})
			}
			c.mu.Unlock()
		}
		for _, ps := range got {
			slices.SortFunc(ps, func(a, b print) int { return cmp.Compare(a.at, b.at) })
		}
		return got
	}
	waitFor(t, 30*time.Second, func() error {
		got := all()
		for _, o := range origins {
			for off := int64(0); off < next[o]; off++ {
				if len(got[key{o.Node, o.Partition, off}]) == 0 {
					return fmt.Errorf("%s/%d offset %d not printed yet", o.Node, o.Partition, off)
				}
			}
		}
		return nil
	})
	t.Logf("every record printed %v after c2 was killed", time.Since(killed).Round(time.Millisecond))
	got := all()
	dups := 0
	for k, by := range got {
		if len(by) > 1 {
			dups++
			if by[0].by != "c2" {
				t.Errorf("%v printed by %v: a duplicate not from the killed member's uncommitted tail", k, by)
			}
		}
	}
	for _, c := range cs {
		last := map[[2]any]int64{}
		c.mu.Lock()
		for _, l := range c.lines {
			k := [2]any{l.Node, l.Partition}
			if prev, ok := last[k]; ok && l.Offset > prev+1 {
				t.Errorf("%s printed %s/%d offset %d after %d (out of order)", c.name, l.Node, l.Partition, l.Offset, prev)
			}
			last[k] = l.Offset
		}
		c.mu.Unlock()
	}
	// c1 and c3 leave cleanly; a new member prints only what is new.
	cs[0].signal(syscall.SIGTERM)
	cs[2].signal(syscall.SIGTERM)
	for _, c := range []*consumer{cs[0], cs[2]} {
		if c.cmd.ProcessState == nil || !c.cmd.ProcessState.Success() {
			t.Errorf("%s did not exit 0 on SIGTERM: %v\n%s", c.name, c.cmd.ProcessState, c.stderr.String())
		}
	}
	if !strings.Contains(cs[0].stderr.String()+cs[2].stderr.String(), "taken from a member that died") {
		t.Errorf("neither survivor reported taking c2's buckets over uncleanly:\n%s\n%s", cs[0].stderr.String(), cs[2].stderr.String())
	}
	before := map[wire.Origin]int64{}
	for o, n := range next {
		before[o] = n
	}
	publish(5)
	c4 := startConsumer(t, bin, srv.URL(), "c4")
	waitFor(t, 30*time.Second, func() error {
		c4.mu.Lock()
		defer c4.mu.Unlock()
		if len(c4.lines) < 5*len(origins) {
			return fmt.Errorf("c4 printed %d", len(c4.lines))
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	c4.mu.Lock()
	for _, l := range c4.lines {
		o := wire.Origin{Site: "farm", Node: l.Node, Topic: "telemetry", Partition: l.Partition}
		if l.Offset < before[o] {
			t.Errorf("c4 printed %s/%d offset %d, committed before it joined", l.Node, l.Partition, l.Offset)
		}
	}
	n4 := len(c4.lines)
	c4.mu.Unlock()
	c4.signal(syscall.SIGTERM)
	t.Logf("%d records, %d printed twice (c2's uncommitted tail); after the restart c4 printed %d new ones", len(got), dups, n4)
}
