package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/service"
	"github.com/outpost-edge/outpost/core/wire"
)

// TestCommandSend runs `core command send` against a real core: a known
// site's command is queued (and -wait prints until it gives up, no edge
// takes it here), an unknown site's is rejected, bad flags are usage
// errors.
func TestCommandSend(t *testing.T) {
	srv := natstest.RunServer(t)
	cfg := service.DefaultConfig()
	cfg.NATS.URL = srv.URL()
	cfg.HTTP.Listen = "127.0.0.1:0"
	svc, err := service.New(cfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-svc.Started()
	base := "http://" + svc.HTTPAddr().String()
	natstest.WaitFor(t, 30*time.Second, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return context.DeadlineExceeded
		}
		return nil
	})
	// Make farm-1 known the way an edge does: a status report.
	nc, _ := srv.Connect()
	st, _ := json.Marshal(wire.Status{Version: 1, Site: "farm-1", Node: "pi-a", Time: time.Now()})
	natstest.WaitFor(t, 10*time.Second, func() error {
		if err := nc.Publish(wire.StatusSubject(wire.DefaultPrefix, "farm-1", "pi-a"), st); err != nil {
			return err
		}
		resp, err := http.Get(base + "/v1/sites")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var v struct{ Sites []json.RawMessage }
		_ = json.NewDecoder(resp.Body).Decode(&v)
		if len(v.Sites) == 0 {
			return context.DeadlineExceeded
		}
		return nil
	})

	var out, errOut bytes.Buffer
	code := runCommandSend([]string{"-core", base, "-site", "farm-1", "-device", "valve-1", "-topic", "cmd/valve-1", "-payload", "open", "-id", "c-1", "-wait", "-wait-for", "500ms"}, &out, &errOut)
	if code != 3 || !strings.Contains(out.String(), " c-1 queued") || !strings.Contains(errOut.String(), "before a final status") {
		t.Fatalf("queued: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code = runCommandSend([]string{"-core", base, "-site", "nowhere", "-device", "x", "-topic", "cmd/x", "-payload", "hi"}, &out, &errOut)
	if code != 1 || !strings.Contains(out.String(), "rejected (unknown_site)") {
		t.Fatalf("unknown site: exit %d\n%s\n%s", code, out.String(), errOut.String())
	}
	for name, args := range map[string][]string{
		"no_site":   {"-device", "x", "-topic", "t"},
		"bad_qos":   {"-site", "s", "-device", "x", "-topic", "t", "-qos", "2"},
		"bad_flag":  {"-nope"},
		"no_device": {"-site", "s", "-topic", "t"},
	} {
		if code := runCommandSend(args, &out, &errOut); code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
	out.Reset()
	errOut.Reset()
	code = runCommandSend([]string{"-core", base, "-site", "farm-1", "-device", "valve-1", "-topic", "cmd/#", "-payload", "x"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "wildcard") {
		t.Fatalf("bad topic: exit %d\n%s", code, errOut.String())
	}
}
