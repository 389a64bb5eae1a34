package command

import (
	"fmt"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/wire"
)

// TestRecent: newest first, one entry per command (its latest status),
// never more than RecentMax.
func TestRecent(t *testing.T) {
	var q Queue
	now := time.Unix(1_800_000_000, 0)
	st := func(id string, s wire.CommandStatus) wire.CommandState {
		return wire.CommandState{Command: wire.Command{ID: id, Site: "farm", Device: "d"}, Status: s}
	}
	q.recent.note(st("a", wire.StatusQueued), now)
	q.recent.note(st("b", wire.StatusQueued), now)
	q.recent.note(st("a", wire.StatusDelivered), now)
	got := q.Recent()
	if len(got) != 2 || got[0].ID != "a" || got[0].Status != wire.StatusDelivered || got[1].ID != "b" {
		t.Fatalf("recent %+v", got)
	}
	for i := 0; i < RecentMax+10; i++ {
		q.recent.note(st(fmt.Sprint("c", i), wire.StatusQueued), now)
	}
	if got = q.Recent(); len(got) != RecentMax || got[0].ID != fmt.Sprint("c", RecentMax+9) {
		t.Fatalf("%d recent, first %s", len(got), got[0].ID)
	}
}
