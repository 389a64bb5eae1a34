package upstream

import (
	"context"
	"testing"
)

// TestWindow: the window takes one message until it is opened, then up to
// its size or maxInflightBytes, and every byte it took from the
// scheduler's in-flight budget goes back, by pop or by release.
func TestWindow(t *testing.T) {
	s := newScheduler(0, 64<<20, nil)
	w := newWindow(s, 3)
	add := func(first int64, size int) {
		t.Helper()
		if err := s.acquire(context.Background(), size, false); err != nil {
			t.Fatal(err)
		}
		w.add(inflight{first: first, last: first, records: 1, size: size, fut: done(nil, false)})
	}
	inflight := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.inflight
	}
	if w.full() {
		t.Fatal("an empty window is full")
	}
	add(0, 100)
	if !w.full() {
		t.Fatal("a window not yet opened takes more than one message")
	}
	w.open()
	add(1, 200)
	add(2, 300)
	if !w.full() || w.len() != 3 {
		t.Fatalf("full %v with %d messages, size 3", w.full(), w.len())
	}
	if ok, _ := w.head(); ok == nil {
		t.Fatal("head of a non-empty window has no channel")
	}
	if h := w.pop(); h.first != 0 || inflight() != 500 || w.bytes != 500 {
		t.Fatalf("pop: message %d, budget %d, window bytes %d; want 0, 500, 500", h.first, inflight(), w.bytes)
	}
	if w.full() {
		t.Fatal("full after a pop")
	}
	add(3, maxInflightBytes)
	if !w.full() {
		t.Fatalf("not full at %d bytes", w.bytes)
	}
	w.release()
	if inflight() != 0 {
		t.Fatalf("budget %d after release, want 0", inflight())
	}
	w = newWindow(s, 3)
	if ok, failed := w.head(); ok != nil || failed != nil {
		t.Fatal("head of an empty window has channels")
	}
}
