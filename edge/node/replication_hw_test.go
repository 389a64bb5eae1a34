package node_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/edge/node"
)

// slowLink is a TCP proxy that delivers what the target sends back after a
// delay: a slow link between two Pis.
type slowLink struct {
	ln    net.Listener
	delay time.Duration
	wg    sync.WaitGroup
}

func startSlowLink(t *testing.T, target string, delay time.Duration) *slowLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := &slowLink{ln: ln, delay: delay}
	sl.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			sl.wg.Go(func() { io.Copy(s, c); s.Close(); c.Close() })
			sl.wg.Go(func() { sl.delayed(c, s); c.Close(); s.Close() })
		}
	})
	t.Cleanup(func() { ln.Close(); sl.wg.Wait() })
	return sl
}

func (sl *slowLink) delayed(dst, src net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 1024)
	sl.wg.Go(func() {
		defer close(ch)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				ch <- chunk{b[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	})
	for c := range ch {
		time.Sleep(time.Until(c.at.Add(sl.delay)))
		if _, err := dst.Write(c.b); err != nil {
			for range ch {
			}
			return
		}
	}
}

// TestReplicationForwardsOnlyReplicated: the centre never gets ahead of
// the site's in-sync replicas. pi-a replicates to pi-b over a slow link
// (acks: local: acknowledgements do not wait for it) and forwards to the
// centre over a fast one; pi-a's disk dies and it restores from pi-b. Had
// it forwarded what pi-b did not have yet, the restored pi-a would write
// new records at offsets the centre already holds for others, and those
// would never be forwarded. Every record published after the restore must
// reach the centre, and every origin partition holds 0, 1, 2… once.
func TestReplicationForwardsOnlyReplicated(t *testing.T) {
	srv := natstest.RunServer(t)
	addrA, addrB := freeAddr(t), freeAddr(t)
	slow := startSlowLink(t, addrA, 150*time.Millisecond)
	cfgA := replicatingConfig(t, "pi-a", addrA, "pi-b", addrB)
	cfgB := replicatingConfig(t, "pi-b", addrB, "pi-a", slow.ln.Addr().String())
	for _, c := range []*node.Config{&cfgA, &cfgB} {
		c.Upstream.URL = srv.URL()
		c.Replication.Acks = "local"
	}
	start(t, cfgB, node.Options{})
	a := start(t, cfgA, node.Options{})
	waitInSync(t, a)
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 300)
	a.stop(t) // at once: pi-b's replica may lag what pi-a had
	if err := os.RemoveAll(cfgA.DataDir); err != nil {
		t.Fatal(err)
	}
	a = start(t, cfgA, node.Options{})
	publishQoS1(t, a.MQTTAddrs()[0], "dev-1", "sensors/dev-1/temp", 50)
	_, js := srv.Connect()
	waitFor(t, 30*time.Second, func() error {
		var total int64
		for _, ti := range a.Log().Topics() {
			if ti.Name != "telemetry" {
				continue
			}
			for _, pi := range ti.Partitions {
				total += pi.EndOffset
			}
		}
		if got := upstreamOrigins(t, js)["pi-a"]; int64(got) != total {
			return fmt.Errorf("%d records upstream, pi-a's log holds %d", got, total)
		}
		return nil
	})
}
