package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if code := runServe([]string{"-h"}, &out); code != 0 {
		t.Fatalf("core -h exit %d", code)
	}
	for _, want := range []string{"core tail", "-nats-listen", "-sync-interval", "fsync every write", "/v1/sites"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("core -h lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := runTail([]string{"-h"}, &out, &out); code != 0 || !strings.Contains(out.String(), "-from-start") {
		t.Fatalf("core tail -h exit %d:\n%s", code, out.String())
	}
}

func TestBadUsage(t *testing.T) {
	cases := map[string][]string{
		"stray_arg":   {"tial"},
		"bad_flag":    {"-nope"},
		"bad_config":  {"-config", "/nonexistent/core.yaml"},
		"bad_sync":    {"-sync-interval", "sometimes"},
		"bad_loglvl":  {"-log-level", "loud"},
		"replicas_r3": {"-config", "../configs/core-cluster.yaml", "-nats", ""},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if code := runServe(args, &out); code != 2 {
				t.Fatalf("exit %d, want 2; output:\n%s", code, out.String())
			}
			if out.Len() == 0 {
				t.Fatal("no message for the user")
			}
		})
	}
}

func TestTailSubcommand(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	natstest.CreateTopicStream(t, js, "outpost", "telemetry", wire.TopicConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := wire.Origin{Site: "farm", Node: "pi", Topic: "telemetry", Partition: 1}
	m, _ := wire.NewMsg("outpost", o, wire.Record{Offset: 7, Key: []byte("dev-1"), Value: []byte("hello")})
	b, _ := wire.NewBatchMsg("outpost", o, []wire.Record{{Offset: 8, Value: []byte("x")}, {Offset: 9, Value: []byte("y")}})
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, b); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := runTail([]string{"-nats", srv.URL(), "-from-start", "-for", "1s", "telemetry"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "farm/pi telemetry/1@7 ") || !strings.HasSuffix(lines[0], "key=dev-1 value=hello") ||
		!strings.HasSuffix(lines[2], "value=y") {
		t.Fatalf("output:\n%s", out.String())
	}

	errOut.Reset()
	if code := runTail([]string{"-nats", srv.URL(), "-for", "1s", "missing"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "OUTPOST_missing") {
		t.Fatalf("missing topic: exit %d %q", code, errOut.String())
	}
}
