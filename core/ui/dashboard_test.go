package ui

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/sites"
	"github.com/outpost-edge/outpost/core/wire"
)

// TestSnapshot: totals over sites and nodes, stale nodes counted, the
// oldest waiting record over every partition, and readiness carried.
func TestSnapshot(t *testing.T) {
	view := []sites.Site{
		{Site: "farm-1", Nodes: []sites.Node{
			{Node: "pi-a", LagRecords: 10, Partitions: []wire.PartitionStatus{{Topic: "t", LagRecords: 10, OldestUnforwardedAgeMs: 4000}}},
			{Node: "pi-b", Stale: true, LagRecords: 5, Partitions: []wire.PartitionStatus{{Topic: "t", LagRecords: 5, OldestUnforwardedAgeMs: 90000}}},
		}},
		{Site: "ship-7", Nodes: []sites.Node{{Node: "pi-a", Partitions: []wire.PartitionStatus{}}}},
	}
	ready := errors.New("loading the schema registry")
	d := New(Config{Sites: func() []sites.Site { return view }, Subjects: func() []string { return []string{"telemetry-value v2"} },
		Ready: func() error { return ready }, Now: func() time.Time { return time.Unix(1_800_000_000, 0) }})
	var s Snapshot
	if err := json.Unmarshal(d.hub.Last(), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Sites) != 2 || s.Nodes != 3 || s.Stale != 1 || s.LagRecords != 15 || s.LagSeconds != 90 {
		t.Errorf("snapshot %+v", s)
	}
	if s.Ready || s.NotReady != "loading the schema registry" || len(s.Subjects) != 1 {
		t.Errorf("ready %v %q subjects %v", s.Ready, s.NotReady, s.Subjects)
	}
	ready = nil
	d.sample()
	if err := json.Unmarshal(d.hub.Last(), &s); err != nil || !s.Ready {
		t.Errorf("after ready: %+v %v", s.Ready, err)
	}
}
