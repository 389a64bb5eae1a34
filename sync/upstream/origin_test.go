package upstream

import (
	"errors"
	"strings"
	"testing"
)

// TestOriginPinned: the cursors remember the origin they were made under.
// New refuses another Site or Node for them (forwarding would send every
// record again under new subjects and Nats-Msg-Ids), also for a data
// directory whose pin edge/node wrote before the forwarder owned it, and
// pins other cursor names separately.
func TestOriginPinned(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	cfg := testConfig("nats://127.0.0.1:4222", nil)
	if _, err := New(t.Context(), cfg, l, st); err != nil {
		t.Fatal(err)
	}
	if _, err := New(t.Context(), cfg, l, st); err != nil {
		t.Fatalf("same origin again: %v", err)
	}
	moved := cfg
	moved.Site = "farm-2"
	_, err := New(t.Context(), moved, l, st)
	if !errors.Is(err, ErrOriginChanged) || !strings.Contains(err.Error(), `"farm-1/pi-a"`) || !strings.Contains(err.Error(), `"farm-2/pi-a"`) {
		t.Fatalf("another site: %v, want ErrOriginChanged naming both origins", err)
	}
	moved = cfg
	moved.Node = "pi-b"
	if _, err := New(t.Context(), moved, l, st); !errors.Is(err, ErrOriginChanged) {
		t.Fatalf("another node: %v, want ErrOriginChanged", err)
	}

	// Other cursors (a forwarder for another origin) have their own pin.
	other := moved
	other.CursorName = "upstream-pi-b"
	if _, err := New(t.Context(), other, l, st); err != nil {
		t.Fatalf("other cursors under their own origin: %v", err)
	}
	other.Node = "pi-c"
	if _, err := New(t.Context(), other, l, st); !errors.Is(err, ErrOriginChanged) {
		t.Fatalf("other cursors under a third origin: %v, want ErrOriginChanged", err)
	}

	// A data directory pinned by edge/node before: bucket "upstream", key
	// "origin", "site/node".
	st2 := openMeta(t, metaPath(t.TempDir()))
	if err := st2.Put(t.Context(), "upstream", "origin", []byte("farm-9/pi-a")); err != nil {
		t.Fatal(err)
	}
	if _, err := New(t.Context(), cfg, l, st2); !errors.Is(err, ErrOriginChanged) {
		t.Fatalf("pin written by edge/node: %v, want ErrOriginChanged", err)
	}
}
