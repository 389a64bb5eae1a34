package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/provision"
	"github.com/outpost-edge/outpost/core/sites"
	"github.com/outpost-edge/outpost/core/wire"
)

// startCore runs a Service until the test ends and waits for Started.
func startCore(t *testing.T, cfg Config) *Service {
	t.Helper()
	svc, err := New(cfg, nil, prometheus.NewPedanticRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
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
	select {
	case <-svc.Started():
	case err := <-done:
		t.Fatalf("Run returned before starting: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("core did not start within 30s")
	}
	return svc
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	natstest.WaitFor(t, 20*time.Second, func() error {
		code, body, err := get(base + "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", code, body)
		}
		return nil
	})
}

func TestEmbeddedCore(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.NATS.Embedded.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Streams.Defaults.DuplicateWindow = 90 * time.Second
	cfg.Streams.Topics = []provision.Topic{
		{Name: "telemetry", TopicConfig: wire.TopicConfig{MaxAge: 48 * time.Hour, MaxBytes: 64 << 20, DuplicateWindow: 20 * time.Second}},
	}
	svc := startCore(t, cfg)
	base := "http://" + svc.HTTPAddr().String()
	waitReady(t, base)

	if code, body, err := get(base + "/healthz"); err != nil || code != 200 || body != "ok\n" {
		t.Fatalf("healthz %d %q %v", code, body, err)
	}

	// An edge connects over TCP like any client.
	nc, err := nats.Connect(svc.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	st, err := js.Stream(ctx, "OUTPOST_telemetry")
	if err != nil {
		t.Fatalf("configured stream missing: %v", err)
	}
	c := st.CachedInfo().Config
	if c.MaxAge != 48*time.Hour || c.MaxBytes != 64<<20 || c.Duplicates != 20*time.Second || c.Replicas != 1 {
		t.Fatalf("configured stream %+v", c)
	}

	// Auto-provisioning on request takes the defaults.
	rep, err := wire.RequestProvision(ctx, nc, "outpost", "farm-1", "pi-a", "plant.events")
	if err != nil || !rep.Created {
		t.Fatalf("provision: %+v %v", rep, err)
	}
	st, err = js.Stream(ctx, rep.Stream)
	if err != nil || st.CachedInfo().Config.Duplicates != 90*time.Second {
		t.Fatalf("auto stream: %v %+v", err, st)
	}

	// A status report shows up in /v1/sites.
	rpt := wire.Status{Site: "farm-1", Node: "pi-a", Time: time.Now(), Partitions: []wire.PartitionStatus{
		{Topic: "telemetry", Partition: 0, EndOffset: 120, ForwardedOffset: 100, LagRecords: 20, LagBytes: 2048, OldestUnforwardedAgeMs: 3000},
	}}
	if err := wire.PublishStatus(nc, "outpost", rpt); err != nil {
		t.Fatal(err)
	}
	var view sites.SitesResponse
	natstest.WaitFor(t, 10*time.Second, func() error {
		code, body, err := get(base + "/v1/sites")
		if err != nil || code != 200 {
			return fmt.Errorf("%d %v", code, err)
		}
		if err := json.Unmarshal([]byte(body), &view); err != nil {
			return err
		}
		if len(view.Sites) != 1 {
			return fmt.Errorf("view %s", body)
		}
		return nil
	})
	n := view.Sites[0].Nodes[0]
	if view.Sites[0].Site != "farm-1" || n.Node != "pi-a" || n.LagRecords != 20 || n.Partitions[0].ForwardedOffset != 100 {
		t.Fatalf("view %+v", view)
	}

	_, metrics, err := get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`outpost_core_forward_lag_records{node="pi-a",partition="0",site="farm-1",topic="telemetry"} 20`,
		`outpost_core_provision_requests_total{result="created"} 1`,
		`outpost_core_status_reports_total{result="ok"} 1`,
		"outpost_core_nats_connected 1",
		"outpost_core_ready 1",
	} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %s:\n%s", want, metrics)
		}
	}
}

// TestExternalCore runs core against a separate server and takes it away:
// /readyz follows the connection, and provisioning done while NATS was down
// happens once it is back.
func TestExternalCore(t *testing.T) {
	srv := natstest.RunServer(t)
	srv.Stop() // core starts while the cluster is down

	cfg := DefaultConfig()
	cfg.NATS.URL = srv.URL()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Streams.Topics = []provision.Topic{{Name: "telemetry"}}
	svc := startCore(t, cfg)
	base := "http://" + svc.HTTPAddr().String()

	code, body, err := get(base + "/readyz")
	if err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("readyz with NATS down: %d %q %v", code, body, err)
	}
	srv.Start()
	waitReady(t, base)
	_, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, "OUTPOST_telemetry"); err != nil {
		t.Fatalf("stream not provisioned after NATS came back: %v", err)
	}

	srv.Stop()
	natstest.WaitFor(t, 10*time.Second, func() error {
		code, body, err := get(base + "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "NATS") {
			return fmt.Errorf("readyz %d %q with NATS down", code, body)
		}
		return nil
	})
	srv.Start()
	waitReady(t, base)
	if code, _, _ := get(base + "/healthz"); code != 200 {
		t.Fatal("healthz")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Prefix = "bad prefix"
	if _, err := New(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "prefix:") {
		t.Fatalf("err = %v", err)
	}
}

func TestEmbeddedPortTaken(t *testing.T) {
	srv := natstest.RunServer(t)
	cfg := DefaultConfig()
	cfg.NATS.Embedded.Listen = strings.TrimPrefix(srv.URL(), "nats://")
	cfg.NATS.Embedded.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	svc, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = svc.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "port taken") {
		t.Fatalf("err = %v; want a hint about the port", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("timed out")
	}
}

// TestEmbeddedWithAuthSample runs the embedded server with
// configs/nats-embedded-auth.conf: core logs in as "core", an edge as
// "edge" can do everything the forwarder needs and nothing else.
func TestEmbeddedWithAuthSample(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.NATS.Embedded.DataDir = t.TempDir()
	cfg.NATS.Embedded.ConfigFile = "../../configs/nats-embedded-auth.conf"
	cfg.NATS.User, cfg.NATS.Password = "core", "change-me-core"
	cfg.HTTP.Listen = "127.0.0.1:0"
	svc := startCore(t, cfg)
	waitReady(t, "http://"+svc.HTTPAddr().String())

	if nc, err := nats.Connect(svc.NATSURL()); err == nil {
		nc.Close()
		t.Fatal("anonymous client accepted")
	}
	asyncErr := make(chan error, 10)
	nc, err := nats.Connect(svc.NATSURL(), nats.UserInfo("edge", "change-me-edge"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErr <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	rep, err := wire.RequestProvision(ctx, nc, "outpost", "farm", "pi", "telemetry")
	if err != nil {
		t.Fatalf("edge provision request: %v", err)
	}
	st, err := js.Stream(ctx, rep.Stream)
	if err != nil {
		t.Fatalf("edge stream info: %v", err)
	}
	o := wire.Origin{Site: "farm", Node: "pi", Topic: "telemetry", Partition: 0}
	m, _ := wire.NewBatchMsg("outpost", o, []wire.Record{{Offset: 0}, {Offset: 1}})
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatalf("edge publish: %v", err)
	}
	subj, _ := wire.LookupSubject("outpost", o, wire.StreamBuckets(st.CachedInfo().Config) > 0)
	if last, ok, err := wire.LastOffset(ctx, st, subj); err != nil || !ok || last != 1 {
		t.Fatalf("edge LastOffset: %d %v %v", last, ok, err)
	}
	if err := wire.PublishStatus(nc, "outpost", wire.Status{Site: "farm", Node: "pi", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// A denied request gets no reply; bound the wait.
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	defer dcancel()
	if err := js.DeleteStream(dctx, rep.Stream); err == nil {
		t.Fatal("edge deleted a stream")
	}
	select {
	case err := <-asyncErr:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Fatalf("async error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no permissions violation reported for the delete")
	}
}

func TestHTTPToken(t *testing.T) {
	tokFile := t.TempDir() + "/token"
	if err := os.WriteFile(tokFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.NATS.Embedded.DataDir = t.TempDir()
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.TokenFile = tokFile
	svc := startCore(t, cfg)
	base := "http://" + svc.HTTPAddr().String()
	waitReady(t, base) // probes need no token

	for _, path := range []string{"/v1/sites", "/metrics"} {
		if code, _, err := get(base + path); err != nil || code != http.StatusUnauthorized {
			t.Fatalf("%s without token: %d %v", path, code, err)
		}
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer 0123456789abcdef0123")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s with token: %d", path, resp.StatusCode)
		}
	}

	short := t.TempDir() + "/short"
	os.WriteFile(short, []byte("abc"), 0o600)
	cfg.HTTP.TokenFile = short
	cfg.NATS.Embedded.DataDir = t.TempDir()
	svc2, err := New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "http.token_file") {
		t.Fatalf("short token: %v", err)
	}
}
