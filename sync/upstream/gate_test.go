package upstream

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGateWindowsNeverSpanConnections plays nats.go's part against the
// gate: a reconnector marks the connection dead, dials through the gate
// and installs the new connection, over and over; publishers run windows
// (read the epoch, then enter/publish/exit until entering fails) and note
// which connection each publish saw. A publish that sees no connection
// fails, as nats.go's does while reconnecting. Every window must see one
// connection only: a window whose messages reach two connections is the
// case where the stream can hold a record above a missing one.
func TestGateWindowsNeverSpanConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	g := newGate(time.Second)
	var conn atomic.Uint64 // id of the installed connection, 0 while reconnecting
	var stop atomic.Bool
	var wg sync.WaitGroup
	var dials, refused atomic.Int64
	wg.Go(func() {
		for !stop.Load() {
			conn.Store(0) // the connection died
			c, err := g.Dial("tcp", ln.Addr().String())
			if errors.Is(err, errDialBusy) {
				refused.Add(1)
				continue
			}
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
			dials.Add(1)
			// nats.go installs the connection under its lock after the dial.
			conn.Store(g.current())
			time.Sleep(time.Duration(dials.Load()%4) * 100 * time.Microsecond)
		}
	})

	var windows, publishes, spans atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				if conn.Load() == 0 {
					// The pump waits for the link to come back up.
					runtime.Gosched()
					continue
				}
				epoch := g.current()
				windows.Add(1)
				var seen uint64
				// As the pump: check the link is up, then enter. The dialer
				// stops with a connection installed and the epoch then stays
				// put, so the window must also end on stop (without it the
				// test spun forever after its run: the hang seen in CI runs).
				for conn.Load() != 0 && !stop.Load() {
					if publishes.Load()%4 == 2 {
						// Descheduled between its check and the publish: a
						// whole reconnect can complete meanwhile (the case
						// the epoch check is for).
						time.Sleep(300 * time.Microsecond)
					}
					if !g.enter(epoch) {
						break
					}
					if publishes.Load()%8 == 0 {
						// Descheduled inside the publish, as a goroutine on a
						// busy Pi can be (the case the busy count is for).
						time.Sleep(50 * time.Microsecond)
					}
					id := conn.Load()
					g.exit()
					if id == 0 {
						break // publish failed: abort, resolve, new window
					}
					publishes.Add(1)
					if seen != 0 && id != seen {
						spans.Add(1)
					}
					seen = id
				}
			}
		})
	}
	// Run until enough has happened to tell, or give up after 10 s.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if dials.Load() >= 50 && publishes.Load() >= 1000 {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d dials (%d deferred), %d windows, %d publishes", dials.Load(), refused.Load(), windows.Load(), publishes.Load())
	if dials.Load() < 50 || publishes.Load() < 1000 {
		t.Fatalf("too little happened to tell: %d dials, %d publishes", dials.Load(), publishes.Load())
	}
	if n := spans.Load(); n > 0 {
		t.Fatalf("%d publishes reached another connection than earlier ones of their window", n)
	}
	if refused.Load() != g.deferred.Load() {
		t.Errorf("deferred counter %d, refusals seen %d", g.deferred.Load(), refused.Load())
	}
}
