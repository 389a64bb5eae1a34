package natstest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

func TestRestartKeepsStoreAndURL(t *testing.T) {
	srv := natstest.RunServer(t, natstest.WithSyncAlways(), natstest.WithOptions(func(o *server.Options) {
		o.MaxPayload = 2 << 20
	}))
	if got := srv.NATSServer().JetStreamConfig(); got == nil || !got.SyncAlways {
		t.Fatalf("JetStream config %+v, want SyncAlways", got)
	}
	url := srv.URL()
	nc, js := srv.Connect()
	st := natstest.CreateTopicStream(t, js, "outpost", "t", wire.TopicConfig{DuplicateWindow: time.Second})
	if d := st.CachedInfo().Config.Duplicates; d != time.Second {
		t.Fatalf("duplicate window %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, "outpost.t.s.n.0", []byte("x")); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	if srv.NATSServer() != nil {
		t.Fatal("server still set after Stop")
	}
	srv.Start()
	if srv.URL() != url {
		t.Fatalf("URL changed across restart: %s -> %s", url, srv.URL())
	}
	natstest.WaitFor(t, 10*time.Second, func() error {
		if !nc.IsConnected() {
			return errors.New("client not reconnected")
		}
		return nil
	})
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages after restart, want 1", info.State.Msgs)
	}
}

func TestSharedStoreDir(t *testing.T) {
	dir := t.TempDir()
	a := natstest.RunServer(t, natstest.WithStoreDir(dir), natstest.WithSyncInterval(time.Second))
	_, js := a.Connect()
	natstest.CreateTopicStream(t, js, "outpost", "kept", wire.TopicConfig{})
	a.Stop()

	b := natstest.RunServer(t, natstest.WithStoreDir(dir))
	_, js = b.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, "OUTPOST_kept"); err != nil {
		t.Fatalf("stream not found on reopened store: %v", err)
	}
}
