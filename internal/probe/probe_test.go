package probe

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReady(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if !ready {
			http.Error(w, "log failed", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if err := Ready(addr, "tok", time.Second); err != nil {
		t.Fatalf("ready: %v", err)
	}
	if err := Ready(addr, "", time.Second); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("no token: %v", err)
	}
	ready = false
	if err := Ready(addr, "tok", time.Second); err == nil || !strings.Contains(err.Error(), "log failed") {
		t.Fatalf("not ready: %v, want the reason", err)
	}
	srv.Close()
	if err := Ready(addr, "tok", time.Second); err == nil || !strings.Contains(err.Error(), "is it running") {
		t.Fatalf("down: %v", err)
	}
}
