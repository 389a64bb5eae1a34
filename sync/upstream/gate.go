package upstream

import (
	"net"
	"runtime"
	"sync/atomic"
	"time"
)

// gate makes "check the connection, then publish" atomic with respect to
// nats.go's reconnects. Without it a whole reconnect can complete between a
// partition's check and its publish, so that one message goes out on the
// new connection while the ones before it in the window died with the old
// one: the stream then holds a record above a missing one, which resuming
// after the stream's last record turns into a hole, and resending into a
// reorder.
//
// nats.go dials every connection through the gate (nats.SetCustomDialer).
// A dial first moves the epoch on, then goes ahead only if no publish is
// inside [enter, exit); a publish enters only if the epoch is still the one
// its window started on. Both sides write their own counter before they
// read the other's (sequentially consistent atomics), so either the
// publish sees the new epoch and does not send, or the dial sees the
// publish and is deferred: no publish of a window can reach a connection
// dialled after the window started. Every message of a window therefore
// travels on one TCP connection, in order, and the stream holds a prefix of
// them plus whatever the server refused (which abort handles).
//
// The dialer cannot wait for the publish to finish: nats.go holds its
// connection lock while dialling, and the publish needs that lock. It spins
// briefly for a publish that is about to leave, and otherwise refuses.
type gate struct {
	dialer net.Dialer
	epoch  atomic.Uint64 // dials started
	busy   atomic.Int64  // publishes inside [enter, exit)
	// deferred counts dials refused because a publish was in progress.
	deferred atomic.Int64
}

func newGate(timeout time.Duration) *gate {
	return &gate{dialer: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}}
}

// Dial implements nats.CustomDialer.
func (g *gate) Dial(network, address string) (net.Conn, error) {
	g.epoch.Add(1)
	for spin := 0; g.busy.Load() > 0; spin++ {
		if spin == 100 {
			g.deferred.Add(1)
			return nil, errDialBusy
		}
		runtime.Gosched()
	}
	return g.dialer.Dial(network, address)
}

// current is the epoch a window starts on.
func (g *gate) current() uint64 { return g.epoch.Load() }

// enter reports whether a publish of a window that started on epoch may go
// out now; if so the caller must call exit once nats.go has taken the
// message.
func (g *gate) enter(epoch uint64) bool {
	g.busy.Add(1)
	if g.epoch.Load() != epoch {
		g.busy.Add(-1)
		return false
	}
	return true
}

func (g *gate) exit() { g.busy.Add(-1) }
