package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/internal/polltest"
)

// TestLinkShared: one Link serves the forwarder (Config.Link) and another
// user of the connection. Both learn about a reconnect (Changed,
// Connects), forwarding goes on exactly once across it, stopping the
// forwarder leaves the shared connection open, and the link's own Run
// closes it.
func TestLinkShared(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "t", 2)
	createStream(t, js, "t", wire.TopicConfig{})
	appendN(t, l, "t", 0, 100, 50)
	appendN(t, l, "t", 1, 100, 50)

	lg, logs := newLogger(t)
	reg := prometheus.NewRegistry()
	link, err := NewLink(LinkConfig{URL: srv.URL(), Name: "test", ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 300 * time.Millisecond, Timeout: 2 * time.Second, Logger: lg, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	stopLink := runLink(t, link)
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := link.Wait(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := link.Run(wctx); err == nil {
		t.Error("a second Run of the link did not refuse")
	}

	// The other user: a plain subscription on the shared connection.
	got := make(chan *nats.Msg, 4)
	if _, err := c.NATS().ChanSubscribe("test.other", got); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig("", lg)
	cfg.Link = link
	cfg.Registerer = reg
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	stopForwarder := runForwarder(t, f)
	waitForwarded(t, f, 20*time.Second, 2)

	restartAndWaitReconnect(t, srv, link)
	if n := metricValue(t, reg, "outpost_upstream_reconnects_total"); n < 1 {
		t.Errorf("reconnects_total %v after a server restart", n)
	}
	appendN(t, l, "t", 0, 50, 50)
	waitForwarded(t, f, 20*time.Second, 2)
	checkExactlyOnce(t, js, "t", map[int32]int64{0: 150, 1: 100})

	// The forwarder does not own the shared connection.
	stopForwarder()
	nc, _ := srv.Connect()
	if err := nc.Publish("test.other", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Data) != "still here" {
			t.Fatalf("other user got %q", m.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the other user's subscription got nothing after the forwarder stopped (closed: %v)", c.NATS().IsClosed())
	}

	// The link's owner does.
	if err := stopLink(); err != nil {
		t.Fatalf("Link.Run: %v", err)
	}
	if !c.NATS().IsClosed() || link.Conn() != nil {
		t.Errorf("after Link.Run returned: closed %v, Conn %v", c.NATS().IsClosed(), link.Conn())
	}
	if v := metricValue(t, reg, "outpost_upstream_connected"); v != 0 {
		t.Errorf("connected %v after Link.Run returned", v)
	}
	if n := logs.Count("level=ERROR"); n != 0 {
		t.Errorf("%d error lines:\n%s", n, logs.String())
	}
}

// TestLinkConfigValidate: a bad LinkConfig fails at NewLink naming the
// field; the forwarder refuses a shared link next to its own settings.
func TestLinkConfigValidate(t *testing.T) {
	good := LinkConfig{URL: "nats://127.0.0.1:4222"}
	if _, err := NewLink(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	cases := map[string]func(*LinkConfig){
		"URL":          func(c *LinkConfig) { c.URL = "" },
		"TLS.CertFile": func(c *LinkConfig) { c.TLS.CertFile = "cert.pem" },
		"ReconnectMax": func(c *LinkConfig) { c.ReconnectMin, c.ReconnectMax = time.Second, time.Millisecond },
		"Timeout":      func(c *LinkConfig) { c.Timeout = time.Millisecond },
	}
	for field, mutate := range cases {
		c := good
		mutate(&c)
		if _, err := NewLink(c); err == nil || !strings.Contains(err.Error(), "upstream: "+field) {
			t.Errorf("%s: NewLink = %v, want an error naming the field", field, err)
		}
	}
}

// restartAndWaitReconnect restarts srv and waits until link has signalled
// a change of state and counts one more connect.
func restartAndWaitReconnect(t *testing.T, srv *natstest.Server, link *Link) {
	t.Helper()
	seen := link.Connects()
	changed := link.Changed()
	srv.Restart()
	polltest.Until(t, 20*time.Second, func() error {
		select {
		case <-changed:
		default:
			return errors.New("no change of state signalled")
		}
		if link.Connects() <= seen || link.Conn() == nil {
			return fmt.Errorf("not reconnected: %d connects (%d before)", link.Connects(), seen)
		}
		return nil
	})
}

// runLink runs link until the returned stop (also run at cleanup) cancels
// it; stop returns what Run returned.
func runLink(t testing.TB, link *Link) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- link.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
