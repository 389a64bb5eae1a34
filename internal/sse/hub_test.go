package sse

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHub: a viewer gets the latest snapshot at once, then each one
// published; publishing never waits for a viewer that does not read (its
// mailbox keeps only the newest); a closed stream leaves no viewer.
func TestHub(t *testing.T) {
	h := NewHub()
	h.Publish([]byte(`{"n":0}`))
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() string {
		t.Helper()
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "data: ") {
				return strings.TrimPrefix(l, "data: ")
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return ""
	}
	if got := next(); got != `{"n":0}` {
		t.Fatalf("first event %q", got)
	}
	// Many publishes while the viewer does not read: a Publish that
	// waited for the viewer would block here for good (the test's
	// timeout), since nothing reads until they are all done.
	for i := 1; i <= 1000; i++ {
		h.Publish([]byte(`{"n":` + strings.Repeat("1", i%7+1) + `}`))
	}
	h.Publish([]byte(`{"n":"last"}`))
	for got := next(); got != `{"n":"last"}`; got = next() {
	}
	if h.Viewers() != 1 {
		t.Fatalf("%d viewers", h.Viewers())
	}
	resp.Body.Close()
	cancel()
	for i := 0; i < 200 && h.Viewers() != 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if h.Viewers() != 0 {
		t.Fatalf("%d viewers after the stream closed", h.Viewers())
	}
}
