package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/provision"
	"github.com/outpost-edge/outpost/core/wire"
)

// waitPaused waits until partition 0 of topic "t" reports a pause of kind
// and the error counter of kind reached min.
func waitPaused(t *testing.T, f *Forwarder, reg *prometheus.Registry, kind errKind, min float64) {
	t.Helper()
	natstest.WaitFor(t, 20*time.Second, func() error {
		lags := f.Lag()
		if len(lags) == 0 || !strings.HasPrefix(lags[0].Error, string(kind)+":") {
			return fmt.Errorf("lag %+v, want error of kind %s", lags, kind)
		}
		if v := metricValue(t, reg, "outpost_upstream_publish_errors_total", "kind", string(kind)); v < min {
			return fmt.Errorf("publish_errors_total{kind=%s} = %v, want >= %v", kind, v, min)
		}
		if v := metricValue(t, reg, "outpost_upstream_partition_paused", "topic", "t"); v != 1 {
			return fmt.Errorf("partition_paused = %v", v)
		}
		return nil
	})
}

func TestStreamMissing(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 1)
	appendN(t, l, "t", 0, 100, 100)
	lg, logs := newLogger(t)
	cfg := testConfig(srv.URL(), lg)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitPaused(t, f, reg, kindStreamMissing, 3)
	if n := logs.Count("run core, or set create_streams"); n != 1 {
		t.Errorf("the advice was logged %d times over several retries, want once:\n%s", n, logs.String())
	}
	if n := logs.Count("forwarding paused"); n != 1 {
		t.Errorf("paused logged %d times, want once:\n%s", n, logs.String())
	}
	createStream(t, js, "t", wire.TopicConfig{})
	appendN(t, l, "t", 0, 50, 100)
	waitForwarded(t, f, 20*time.Second, 1)
	checkExactlyOnce(t, js, "t", map[int32]int64{0: 150})
	if n := logs.Count("forwarding resumed"); n != 1 {
		t.Errorf("resumed logged %d times, want once:\n%s", n, logs.String())
	}
}

func TestCreateStreams(t *testing.T) {
	t.Run("no_core", func(t *testing.T) {
		srv := natstest.RunServer(t)
		_, js := srv.Connect()
		dir := t.TempDir()
		l := openLog(t, dir)
		st := openMeta(t, metaPath(dir))
		createTopic(t, l, "t", 2)
		appendN(t, l, "t", 0, 100, 100)
		appendN(t, l, "t", 1, 10, 100)
		lg, logs := newLogger(t)
		cfg := testConfig(srv.URL(), lg)
		cfg.CreateStreams = true
		f, err := New(t.Context(), cfg, l, st)
		if err != nil {
			t.Fatal(err)
		}
		runForwarder(t, f)
		waitForwarded(t, f, 20*time.Second, 2)
		checkExactlyOnce(t, js, "t", map[int32]int64{0: 100, 1: 10})
		if !strings.Contains(logs.String(), "created stream") {
			t.Errorf("no log line about creating the stream:\n%s", logs.String())
		}
	})
	t.Run("core_answers", func(t *testing.T) {
		srv := natstest.RunServer(t)
		nc, js := srv.Connect()
		prov, err := provision.New(js, provision.DefaultConfig(), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		asked := make(chan string, 10)
		sub, err := nc.Subscribe(wire.ProvisionSubscription(wire.DefaultPrefix), func(m *nats.Msg) {
			var req struct{ Topic string }
			_ = json.Unmarshal(m.Data, &req)
			asked <- req.Topic
			name, _, err := prov.Ensure(context.Background(), req.Topic)
			rep := wire.ProvisionReply{Stream: name}
			if err != nil {
				rep.Error = err.Error()
			}
			b, _ := json.Marshal(rep)
			m.Respond(b)
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		dir := t.TempDir()
		l := openLog(t, dir)
		st := openMeta(t, metaPath(dir))
		createTopic(t, l, "t", 1)
		appendN(t, l, "t", 0, 100, 100)
		lg, _ := newLogger(t)
		cfg := testConfig(srv.URL(), lg)
		cfg.CreateStreams = true
		f, err := New(t.Context(), cfg, l, st)
		if err != nil {
			t.Fatal(err)
		}
		runForwarder(t, f)
		waitForwarded(t, f, 20*time.Second, 1)
		checkExactlyOnce(t, js, "t", map[int32]int64{0: 100})
		select {
		case topic := <-asked:
			if topic != "t" {
				t.Errorf("core was asked for %q", topic)
			}
		default:
			t.Error("core was not asked")
		}
	})
}

func TestStreamFull(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	scfg, err := wire.StreamConfig(wire.DefaultPrefix, "t", wire.TopicConfig{Discard: "new"})
	if err != nil {
		t.Fatal(err)
	}
	scfg.MaxMsgs = 50
	if _, err := js.CreateStream(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 1)
	appendN(t, l, "t", 0, 200, 100)
	lg, logs := newLogger(t)
	cfg := testConfig(srv.URL(), lg)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitPaused(t, f, reg, kindStreamFull, 3)
	if n, _ := streamMsgs(ctx, js, "t"); n != 50 {
		t.Errorf("full stream holds %d messages, want 50", n)
	}
	if lag := f.Lag()[0]; lag.ForwardedOffset != 50 || lag.LagRecords != 150 {
		t.Errorf("lag while full %+v", lag)
	}
	if n := logs.Count("kind=stream_full"); n != 1 {
		t.Errorf("stream_full logged %d times, want once:\n%s", n, logs.String())
	}
	scfg.MaxMsgs = -1
	if _, err := js.UpdateStream(ctx, scfg); err != nil {
		t.Fatal(err)
	}
	waitForwarded(t, f, 20*time.Second, 1)
	checkExactlyOnce(t, js, "t", map[int32]int64{0: 200})
}

// authServer runs a server with an "edge" user that may not publish data,
// an "admin" user that may do everything, and JetStream in the global
// account.
func authServer(t *testing.T) *natstest.Server {
	return natstest.RunServer(t, natstest.WithOptions(func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "admin", Password: "admin-pw"},
			{Username: "edge", Password: "edge-pw", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"$JS.API.>", "_INBOX.>", "outpost.$status.>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
			}},
		}
	}))
}

func withUser(url, user, pw string) string {
	return strings.Replace(url, "nats://", "nats://"+user+":"+pw+"@", 1)
}

func TestPermissionDenied(t *testing.T) {
	srv := authServer(t)
	_, js := srv.Connect(nats.UserInfo("admin", "admin-pw"))
	createStream(t, js, "t", wire.TopicConfig{})
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 1)
	appendN(t, l, "t", 0, 100, 100)
	lg, logs := newLogger(t)
	cfg := testConfig(withUser(srv.URL(), "edge", "edge-pw"), lg)
	cfg.AckTimeout = 300 * time.Millisecond
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	stop := runForwarder(t, f)
	waitPaused(t, f, reg, kindPermission, 2)
	if n, _ := streamMsgs(context.Background(), js, "t"); n != 0 {
		t.Errorf("stream holds %d messages from a user that may not publish", n)
	}
	if n := logs.Count("kind=permission"); n != 1 {
		t.Errorf("permission pause logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "Permissions Violation") {
		t.Errorf("the server's permissions violation is not in the log:\n%s", logs.String())
	}
	stop()
	// Fixed: the node restarts with a user that may publish.
	cfg.URL = withUser(srv.URL(), "admin", "admin-pw")
	cfg.Registerer = nil
	f2, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f2)
	waitForwarded(t, f2, 20*time.Second, 1)
	checkExactlyOnce(t, js, "t", map[int32]int64{0: 100})
}

func TestWrongCredentials(t *testing.T) {
	srv := authServer(t)
	_, js := srv.Connect(nats.UserInfo("admin", "admin-pw"))
	createStream(t, js, "t", wire.TopicConfig{})
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 1)
	appendN(t, l, "t", 0, 100, 100)
	lg, logs := newLogger(t)
	cfg := testConfig(withUser(srv.URL(), "admin", "wrong"), lg)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	stop := runForwarder(t, f)
	natstest.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(strings.ToLower(logs.String()), "authorization violation") {
			return fmt.Errorf("no authorization error logged yet:\n%s", logs.String())
		}
		return nil
	})
	// Let it retry a few times (ReconnectMax is 300 ms here): scenario time.
	time.Sleep(time.Second)
	if n := logs.Count("level=WARN msg=\"upstream: connect failed"); n != 1 {
		t.Errorf("connect failure logged %d times over several retries, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "check creds_file") {
		t.Errorf("no advice about credentials:\n%s", logs.String())
	}
	if v := metricValue(t, reg, "outpost_upstream_connect_errors_total", "kind", "auth"); v < 1 {
		t.Errorf("connect_errors_total{kind=auth} = %v, want >= 1", v)
	}
	if v := metricValue(t, reg, "outpost_upstream_connected"); v != 0 {
		t.Errorf("connected = %v", v)
	}
	if n, _ := streamMsgs(context.Background(), js, "t"); n != 0 {
		t.Errorf("stream holds %d messages", n)
	}
	if strings.Contains(logs.String(), "wrong") {
		t.Errorf("the password is in the log:\n%s", logs.String())
	}
	stop()
	cfg.URL = withUser(srv.URL(), "admin", "admin-pw")
	cfg.Registerer = nil
	f2, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f2)
	waitForwarded(t, f2, 20*time.Second, 1)
	checkExactlyOnce(t, js, "t", map[int32]int64{0: 100})
}

// TestCredentialsFixedOnServer: the forwarder keeps retrying refused
// logins, so fixing the account on the server side is enough.
func TestCredentialsFixedOnServer(t *testing.T) {
	var mu sync.Mutex
	password := "old"
	srv := natstest.RunServer(t, natstest.WithOptions(func(o *server.Options) {
		mu.Lock()
		defer mu.Unlock()
		o.Users = []*server.User{{Username: "edge", Password: password}}
	}))
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 1)
	appendN(t, l, "t", 0, 100, 100)
	lg, logs := newLogger(t)
	cfg := testConfig(withUser(srv.URL(), "edge", "new"), lg)
	cfg.CreateStreams = true
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	natstest.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "check creds_file") {
			return fmt.Errorf("no credentials error logged yet")
		}
		return nil
	})
	mu.Lock()
	password = "new"
	mu.Unlock()
	srv.Restart()
	waitForwarded(t, f, 20*time.Second, 1)
	_, js := srv.Connect(nats.UserInfo("edge", "new"))
	checkExactlyOnce(t, js, "t", map[int32]int64{0: 100})
}
