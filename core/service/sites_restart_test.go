package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/provision"
	"github.com/outpost-edge/outpost/core/sites"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/internal/buftest"
)

// runCore starts a Service like startCore, but returns a stop function so
// a test can restart core; stop waits for Run to return and is also
// registered as cleanup. tune may change the service before it runs.
func runCore(t *testing.T, cfg Config, log *slog.Logger, tune func(*Service)) (*Service, func()) {
	t.Helper()
	svc, err := New(cfg, log, prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(svc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return within 15s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-svc.Started():
	case err := <-done:
		t.Fatalf("Run returned before starting: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("core did not start within 30s")
	}
	return svc, stop
}

func getSites(t *testing.T, base string) []sites.Site {
	t.Helper()
	code, body, err := get(base + "/v1/sites")
	if err != nil || code != 200 {
		t.Fatalf("/v1/sites: %d %v", code, err)
	}
	var v sites.SitesResponse
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	return v.Sites
}

func metricsHave(t *testing.T, base string, want ...string) {
	t.Helper()
	_, body, err := get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Fatalf("metrics lack %s:\n%s", w, body)
		}
	}
}

// reportOnce publishes one status report as an edge would, and waits until
// core's view shows it; it returns the node as core saw it.
func reportOnce(t *testing.T, natsURL, base string, st wire.Status, opts ...nats.Option) sites.Node {
	t.Helper()
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := wire.PublishStatus(nc, wire.DefaultPrefix, st); err != nil {
		t.Fatal(err)
	}
	var n sites.Node
	natstest.WaitFor(t, 10*time.Second, func() error {
		for _, s := range getSites(t, base) {
			for _, nd := range s.Nodes {
				if s.Site == st.Site && nd.Node == st.Node {
					n = nd
					return nil
				}
			}
		}
		return fmt.Errorf("%s/%s not in /v1/sites yet", st.Site, st.Node)
	})
	return n
}

// waitPast waits until d has passed since t0: the restored last contact
// must then be visibly the original one, not the restart's.
func waitPast(t *testing.T, t0 time.Time, d time.Duration) {
	t.Helper()
	natstest.WaitFor(t, d+10*time.Second, func() error {
		if since := time.Since(t0); since < d {
			return fmt.Errorf("only %v since %v", since, t0)
		}
		return nil
	})
}

func lagReport() wire.Status {
	return wire.Status{Site: "farm-1", Node: "pi-a", Time: time.Now().UTC(), Software: "edge test",
		Partitions: []wire.PartitionStatus{
			{Topic: "telemetry", Partition: 0, EndOffset: 120, ForwardedOffset: 100, LagRecords: 20, LagBytes: 2048, OldestUnforwardedAgeMs: 3000},
			{Topic: "telemetry", Partition: 1, EndOffset: 7, ForwardedOffset: 7, Error: "stream full"},
		}}
}

// TestSitesSurviveCoreRestart: a node reports, then falls silent (its
// uplink is down); core restarts on the same JetStream store and still
// lists the node with its original last contact and lag.
func TestSitesSurviveCoreRestart(t *testing.T) {
	check := func(t *testing.T, before sites.Node, base string) {
		t.Helper()
		got := getSites(t, base)
		if len(got) != 1 || got[0].Site != "farm-1" || len(got[0].Nodes) != 1 {
			t.Fatalf("after restart /v1/sites = %+v, want farm-1/pi-a", got)
		}
		after := got[0].Nodes[0]
		if d := after.LastContact.Sub(before.LastContact); d < -time.Second || d > time.Second {
			t.Fatalf("last contact after restart %v, before %v: not the original", after.LastContact, before.LastContact)
		}
		if after.LastContactAgeSeconds < 2 {
			t.Fatalf("last contact age %v s after restart, want >= 2 s (the silence)", after.LastContactAgeSeconds)
		}
		if after.LagRecords != 20 || after.LagBytes != 2048 || after.Software != "edge test" ||
			!after.ReportTime.Equal(before.ReportTime) || !reflect.DeepEqual(after.Partitions, before.Partitions) {
			t.Fatalf("node after restart %+v\nbefore %+v", after, before)
		}
		metricsHave(t, base, "outpost_core_sites_persisted 1", `outpost_core_status_reports_total{result="restored"} 1`,
			`outpost_core_forward_lag_records{node="pi-a",partition="0",site="farm-1",topic="telemetry"} 20`)
	}

	t.Run("embedded", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.NATS.Embedded.Listen = "127.0.0.1:0"
		cfg.NATS.Embedded.DataDir = t.TempDir()
		cfg.HTTP.Listen = "127.0.0.1:0"

		svc, stop := runCore(t, cfg, nil, nil)
		base := "http://" + svc.HTTPAddr().String()
		waitReady(t, base)
		before := reportOnce(t, svc.NATSURL(), base, lagReport())
		stop()
		waitPast(t, before.LastContact, 2*time.Second)

		svc, _ = runCore(t, cfg, nil, nil)
		base = "http://" + svc.HTTPAddr().String()
		waitReady(t, base) // ready only once the view is restored
		check(t, before, base)
	})

	t.Run("external", func(t *testing.T) {
		srv := natstest.RunServer(t)
		cfg := DefaultConfig()
		cfg.NATS.URL = srv.URL()
		cfg.HTTP.Listen = "127.0.0.1:0"

		svc, stop := runCore(t, cfg, nil, nil)
		base := "http://" + svc.HTTPAddr().String()
		waitReady(t, base)
		before := reportOnce(t, srv.URL(), base, lagReport())
		stop()
		srv.Restart() // the cluster restarts too, on the same store
		waitPast(t, before.LastContact, 2*time.Second)

		svc, _ = runCore(t, cfg, nil, nil)
		base = "http://" + svc.HTTPAddr().String()
		waitReady(t, base)
		check(t, before, base)
	})
}

// TestForgottenNodeStaysForgotten: a node silent for longer than
// forget_after when core restarts is not brought back.
func TestForgottenNodeStaysForgotten(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.NATS.Embedded.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Sites.ForgetAfter = time.Second
	cfg.Sites.StaleAfter = 500 * time.Millisecond

	svc, stop := runCore(t, cfg, nil, nil)
	base := "http://" + svc.HTTPAddr().String()
	waitReady(t, base)
	before := reportOnce(t, svc.NATSURL(), base, lagReport())
	stop()
	waitPast(t, before.LastContact, 1500*time.Millisecond)

	svc, _ = runCore(t, cfg, nil, nil)
	base = "http://" + svc.HTTPAddr().String()
	waitReady(t, base)
	if got := getSites(t, base); len(got) != 0 {
		t.Fatalf("forgotten node back in /v1/sites: %+v", got)
	}
	metricsHave(t, base, "outpost_core_sites_persisted 1")
}

// TestStatusStreamDenied: a core the cluster does not allow to create the
// status stream starts anyway, says what to do, serves the in-memory view,
// and picks the stream up once an operator creates it.
func TestStatusStreamDenied(t *testing.T) {
	srv := natstest.RunServer(t, natstest.WithOptions(func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "core", Password: "core-pass", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.STREAM.CREATE.OUTPOST-STATUS"}},
			}},
			{Username: "admin", Password: "admin-pass"},
		}
	}))
	cfg := DefaultConfig()
	cfg.NATS.URL = srv.URL()
	cfg.NATS.User, cfg.NATS.Password = "core", "core-pass"
	cfg.HTTP.Listen = "127.0.0.1:0"
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))

	start := time.Now()
	svc, _ := runCore(t, cfg, log, func(s *Service) {
		s.statusTimeout = time.Second // the denied create gets no answer
		s.statusRetry = 100 * time.Millisecond
	})
	base := "http://" + svc.HTTPAddr().String()
	waitReady(t, base)
	t.Logf("ready %v after start with the status stream denied", time.Since(start).Round(time.Millisecond))
	if l := logs.String(); !strings.Contains(l, "IN MEMORY ONLY") || !strings.Contains(l, "$JS.API.STREAM.CREATE.OUTPOST-STATUS") {
		t.Fatalf("log does not say the view is in memory and what to allow:\n%s", l)
	}
	metricsHave(t, base, "outpost_core_sites_persisted 0")
	reportOnce(t, srv.URL(), base, lagReport(), nats.UserInfo("admin", "admin-pass")) // the live view works

	// The operator creates the stream; core finds it and uses it.
	_, js := srv.Connect(nats.UserInfo("admin", "admin-pass"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := provision.StatusStreamConfig("outpost", cfg.StatusStream())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, func() error {
		_, body, err := get(base + "/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(body, "outpost_core_sites_persisted 1") {
			return fmt.Errorf("core has not picked up the status stream")
		}
		return nil
	})
}

// syncBuffer is written by goroutines while the test reads it.
type syncBuffer = buftest.Buffer
