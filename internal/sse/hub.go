package sse

import (
	"net/http"
	"sync"
	"time"
)

// WriteTimeout ends a stream whose viewer stopped reading.
const WriteTimeout = 10 * time.Second

// Hub holds the latest snapshot and the viewers' mailboxes.
type Hub struct {
	mu      sync.Mutex
	last    []byte
	viewers map[chan []byte]struct{}
}

// NewHub returns a Hub with no snapshot yet.
func NewHub() *Hub { return &Hub{viewers: make(map[chan []byte]struct{})} }

// Publish makes b the latest snapshot and hands it to every viewer.
func (h *Hub) Publish(b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = b
	for ch := range h.viewers {
		select {
		case <-ch: // drop the unread older snapshot
		default:
		}
		ch <- b
	}
}

// Last returns the latest snapshot.
func (h *Hub) Last() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Viewers returns how many streams are open.
func (h *Hub) Viewers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.viewers)
}

func (h *Hub) watch() (<-chan []byte, func()) {
	ch := make(chan []byte, 1)
	h.mu.Lock()
	h.viewers[ch] = struct{}{}
	if h.last != nil {
		ch <- h.last
	}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.viewers, ch)
		h.mu.Unlock()
	}
}

// ServeHTTP streams the snapshots as events named "snapshot" until the
// viewer goes away.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ch, stop := h.watch()
	defer stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b := <-ch:
			_ = rc.SetWriteDeadline(time.Now().Add(WriteTimeout))
			for _, part := range [][]byte{[]byte("event: snapshot\ndata: "), b, []byte("\n\n")} {
				if _, err := w.Write(part); err != nil {
					return
				}
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}
