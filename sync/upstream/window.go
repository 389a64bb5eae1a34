package upstream

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxInflightBytes bounds the message bytes one partition has published
// and not yet seen acknowledged (nats.go keeps each pending message until
// its ack): with batches of up to MaxBatchBytes, a window counted only in
// messages could hold hundreds of MiB on a 512 MB Pi.
const maxInflightBytes = 4 << 20

// inflight is one published, not yet acknowledged message.
type inflight struct {
	first, last int64
	records     int
	bytes       int // message data, for the forwarded bytes metric
	size        int // data and headers, taken from the in-flight budget
	fut         jetstream.PubAckFuture
	at          time.Time // when it was published
}

// window is a partition's published, unacknowledged messages, oldest
// first, all on one connection (see gate). It holds at most limit
// messages and maxInflightBytes: limit is 1 until the stream has taken a
// message (the conditional first message after a resume must be the only
// one in flight, and a paused partition probes with one instead of
// sending a whole window to a stream that refuses it), then
// Config.Window. Every message's size is taken from the forwarder's
// in-flight budget (scheduler.acquire) before it is published; the window
// gives it back when the message is acknowledged, and release gives back
// the rest when the pump stops.
type window struct {
	sched *scheduler
	size  int // Config.Window
	limit int
	q     []inflight
	bytes int
}

func newWindow(sched *scheduler, size int) window {
	return window{sched: sched, size: size, limit: 1}
}

// open lets the window grow to its full size.
func (w *window) open() { w.limit = w.size }

// len is the number of messages in flight.
func (w *window) len() int { return len(w.q) }

// full reports whether the window may take no further message now.
func (w *window) full() bool { return len(w.q) >= w.limit || w.bytes >= maxInflightBytes }

// add appends a published message whose size the caller acquired.
func (w *window) add(h inflight) {
	w.q = append(w.q, h)
	w.bytes += h.size
}

// head returns the oldest message's outcome channels; nil channels (never
// ready) when the window is empty.
func (w *window) head() (<-chan *jetstream.PubAck, <-chan error) {
	if len(w.q) == 0 {
		return nil, nil
	}
	return w.q[0].fut.Ok(), w.q[0].fut.Err()
}

// pop removes the oldest message, acknowledged, and gives its size back.
func (w *window) pop() inflight {
	h := w.q[0]
	w.q = w.q[1:]
	w.bytes -= h.size
	w.sched.release(h.size)
	return h
}

// release gives back the budget of every message still in the window: the
// pump stopped, and they are acknowledged, failed or abandoned.
func (w *window) release() {
	w.sched.release(w.bytes)
	w.bytes = 0
}
