package sites

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

func status(site, node string, lag int64) wire.Status {
	return wire.Status{
		Version: wire.StatusVersion, Site: site, Node: node, Time: time.Date(2026, 11, 23, 1, 0, 0, 0, time.UTC),
		Partitions: []wire.PartitionStatus{
			{Topic: "telemetry", Partition: 1, EndOffset: 100, ForwardedOffset: 100 - lag, LagRecords: lag, LagBytes: lag * 10, OldestUnforwardedAgeMs: 1500},
			{Topic: "telemetry", Partition: 0, EndOffset: 50, ForwardedOffset: 50},
		},
	}
}

func TestStatusOverNATSReachesView(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, _ := srv.Connect()
	reg := prometheus.NewPedanticRegistry()
	r, err := New(DefaultConfig(), nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe(wire.StatusSubscription(wire.DefaultPrefix), r.HandleStatus); err != nil {
		t.Fatal(err)
	}
	// The server must know the subscription before another connection
	// publishes, or core NATS drops the first reports (flaked 1 in ~20).
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	edge, _ := srv.Connect()
	if err := wire.PublishStatus(edge, wire.DefaultPrefix, status("farm-1", "pi-a", 7)); err != nil {
		t.Fatal(err)
	}
	// A report whose body names another node than its subject is refused.
	bad, _ := wire.EncodeStatus(status("farm-1", "pi-x", 1))
	if err := edge.Publish(wire.StatusSubject(wire.DefaultPrefix, "farm-1", "pi-b"), bad); err != nil {
		t.Fatal(err)
	}
	if err := edge.Publish(wire.StatusSubject(wire.DefaultPrefix, "farm-1", "pi-c"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	edge.Flush()

	natstest.WaitFor(t, 5*time.Second, func() error {
		if n := counterValue(t, reg, "outpost_core_status_reports_total", "invalid"); n != 2 {
			return fmt.Errorf("%v invalid reports counted", n)
		}
		if len(r.Sites()) != 1 {
			return fmt.Errorf("sites: %+v", r.Sites())
		}
		return nil
	})

	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/sites", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	var resp SitesResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Sites) != 1 || resp.Sites[0].Site != "farm-1" || len(resp.Sites[0].Nodes) != 1 {
		t.Fatalf("view %+v", resp)
	}
	n := resp.Sites[0].Nodes[0]
	if n.Node != "pi-a" || n.LagRecords != 7 || n.LagBytes != 70 || len(n.Partitions) != 2 ||
		n.Partitions[0].Partition != 0 || n.Partitions[1].OldestUnforwardedAgeMs != 1500 || time.Since(n.LastContact) > time.Minute {
		t.Fatalf("node %+v", n)
	}
	for _, want := range []string{`"last_contact"`, `"lag_records": 7`, `"forwarded_offset": 93`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Fatalf("body lacks %s:\n%s", want, rec.Body)
		}
	}
	if got := gaugeValue(t, reg, "outpost_core_forward_lag_records", "partition", "1"); got != 7 {
		t.Fatalf("lag gauge %v", got)
	}

	rec = httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/sites", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", rec.Code)
	}
}

func TestBoundsAndForgetting(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxNodes = 2
	cfg.ForgetAfter = time.Minute
	cfg.StaleAfter = 15 * time.Second
	r, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	for _, n := range []string{"a", "b"} {
		if err := r.Report(status("s", n, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Report(status("s", "c", 0)); err == nil {
		t.Fatal("third node accepted with max_nodes 2")
	}
	if err := r.Report(status("s", "a", 3)); err != nil {
		t.Fatalf("known node refused: %v", err)
	}
	now = now.Add(50 * time.Second)
	if err := r.Report(status("s", "a", 4)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(20 * time.Second) // b silent for 70 s, a for 20 s
	got := r.Sites()
	if len(got) != 1 || len(got[0].Nodes) != 1 || got[0].Nodes[0].Node != "a" || got[0].Nodes[0].LagRecords != 4 || !got[0].Nodes[0].Stale {
		t.Fatalf("view %+v (a silent 20 s > stale_after 15 s)", got)
	}
	if err := r.Report(status("s", "c", 0)); err != nil {
		t.Fatalf("room after forgetting, but: %v", err)
	}
	for _, n := range r.Sites()[0].Nodes {
		if n.Stale != (n.Node == "a") {
			t.Fatalf("node %s stale=%v", n.Node, n.Stale)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.MaxNodes = 0
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "sites.max_nodes:") {
		t.Fatal(err)
	}
	c = DefaultConfig()
	c.StaleAfter = 0
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "sites.stale_after:") {
		t.Fatal(err)
	}
	c = DefaultConfig()
	c.ForgetAfter = -1
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "sites.forget_after:") {
		t.Fatal(err)
	}
}

func counterValue(t *testing.T, reg prometheus.Gatherer, name, result string) float64 {
	return gaugeValue(t, reg, name, "result", result)
}

func gaugeValue(t *testing.T, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}
