package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

// TestAdmin: describe, the HTTP API and the metrics show a group's
// positions and lag; reset (earliest, a time, latest) moves a stopped
// group's positions and is refused while a member lives; delete forgets
// the group.
func TestAdmin(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx := context.Background()
	natstest.CreateTopicStream(t, js, wire.DefaultPrefix, "telemetry", wire.TopicConfig{})
	var origins []wire.Origin
	for p := range int32(16) {
		origins = append(origins, wire.Origin{Site: "farm", Node: "pi-a", Topic: "telemetry", Partition: p})
	}
	next := map[wire.Origin]int64{}
	publish := func(rounds int) {
		for range rounds {
			for _, o := range origins {
				m, _ := wire.NewMsg(wire.DefaultPrefix, o, wire.Record{Offset: next[o], Value: []byte("v")})
				if _, err := js.PublishMsg(ctx, m); err != nil {
					t.Fatal(err)
				}
				next[o]++
			}
		}
	}
	publish(10)
	l := &ledger{got: map[wire.Origin][]delivery{}}
	r := startMember(t, js, Config{Group: "ops", Topic: "telemetry", Member: "a", SessionTimeout: 2 * time.Second, CommitInterval: 50 * time.Millisecond, Handler: l.handler("a")})
	describe := func() GroupInfo {
		t.Helper()
		gi, err := Describe(ctx, js, "", "ops")
		if err != nil {
			t.Fatal(err)
		}
		return gi
	}
	natstest.WaitFor(t, 10*time.Second, func() error {
		if gi := describe(); gi.LagRecords != 0 || len(gi.Members) != 1 || len(gi.Members[0].Buckets) != 16 {
			return fmt.Errorf("lag %d, members %+v", gi.LagRecords, gi.Members)
		}
		return nil
	})
	if err := Reset(ctx, js, "", "ops", "telemetry", Start{Kind: StartEarliest}); !errors.Is(err, ErrActive) {
		t.Fatalf("reset of a live group: %v, want ErrActive", err)
	}
	r.stop(t)
	mid := time.Now()
	time.Sleep(10 * time.Millisecond)
	publish(5)
	gi := describe()
	if gi.Topic != "telemetry" || len(gi.Members) != 0 || len(gi.Buckets) != 16 || gi.LagRecords != 80 {
		t.Fatalf("after a stop and 80 more records: %+v", gi)
	}
	for _, b := range gi.Buckets {
		if b.Member != "" || b.End < b.Committed {
			t.Fatalf("bucket %+v", b)
		}
	}

	api := httptest.NewServer(func() http.Handler {
		mux := http.NewServeMux()
		NewAPI(js, wire.DefaultPrefix).Register(mux)
		return mux
	}())
	defer api.Close()
	get := func(path string, v any) int {
		resp, err := http.Get(api.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil {
			json.NewDecoder(resp.Body).Decode(v)
		}
		return resp.StatusCode
	}
	var all GroupsResponse
	if code := get("/v1/groups", &all); code != 200 || len(all.Groups) != 1 || all.Groups[0].LagRecords != 80 {
		t.Fatalf("GET /v1/groups: %d %+v", code, all)
	}
	var one GroupInfo
	if code := get("/v1/groups/ops", &one); code != 200 || one.Group != "ops" || len(one.Buckets) != 16 {
		t.Fatalf("GET /v1/groups/ops: %d %+v", code, one)
	}
	if code := get("/v1/groups/nope", nil); code != 404 {
		t.Fatalf("GET /v1/groups/nope: %d, want 404", code)
	}
	if code := get("/v1/groups/bad.name", nil); code != 400 {
		t.Fatalf("GET /v1/groups/bad.name: %d, want 400", code)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(js, wire.DefaultPrefix))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "outpost_group_lag_records_total" {
			found = mf.GetMetric()[0].GetGauge().GetValue() == 80
		}
	}
	if !found {
		t.Fatal("outpost_group_lag_records_total{group=ops} is not 80")
	}

	for _, tc := range []struct {
		to   Start
		want uint64
	}{{Start{Kind: StartEarliest}, 240}, {Start{Kind: StartTime, Time: mid}, 80}, {Start{Kind: StartLatest}, 0}} {
		if err := Reset(ctx, js, "", "ops", "telemetry", tc.to); err != nil {
			t.Fatal(err)
		}
		if gi := describe(); gi.LagRecords != tc.want {
			t.Fatalf("after reset to %+v: lag %d, want %d", tc.to, gi.LagRecords, tc.want)
		}
	}
	if err := Delete(ctx, js, "ops"); err != nil {
		t.Fatal(err)
	}
	if names, _ := List(ctx, js); len(names) != 0 {
		t.Fatalf("groups after delete: %v", names)
	}
	if _, err := Describe(ctx, js, "", "ops"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("describe after delete: %v", err)
	}
	if err := Delete(ctx, js, "ops"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}
