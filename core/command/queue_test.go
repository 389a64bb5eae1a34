package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/command"
	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
)

type knownSites map[string]bool

func (k knownSites) Known(site string) bool { return k[site] }

func newQueue(t *testing.T, cfg command.Config) (*command.Queue, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := srv.Connect()
	q, err := command.New(js, wire.DefaultPrefix, cfg, knownSites{"farm-1": true, "farm-2": true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	return q, js
}

func text(s string) *string { return &s }

func TestSendLimits(t *testing.T) {
	cfg := command.DefaultConfig()
	cfg.MaxPerDevice, cfg.MaxPerSite, cfg.MaxPayloadBytes = 2, 3, 16
	q, _ := newQueue(t, cfg)
	ctx := context.Background()
	send := func(site, device, id, payload string) wire.CommandState {
		t.Helper()
		st, err := q.Send(ctx, site, device, wire.CommandRequest{Topic: "cmd/" + device, PayloadText: text(payload), ID: id})
		if err != nil {
			t.Fatalf("send %s: %v", id, err)
		}
		return st
	}
	for _, c := range []struct {
		name, site, device, id, payload string
		status                          wire.CommandStatus
		reason                          string
	}{
		{"first", "farm-1", "a", "a1", "x", wire.StatusQueued, ""},
		{"second", "farm-1", "a", "a2", "x", wire.StatusQueued, ""},
		{"device_full", "farm-1", "a", "a3", "x", wire.StatusRejected, wire.ReasonQueueFull},
		{"same_id_is_one_command", "farm-1", "a", "a1", "x", wire.StatusQueued, ""},
		{"other_device", "farm-1", "b", "b1", "x", wire.StatusQueued, ""},
		{"site_full", "farm-1", "c", "c1", "x", wire.StatusRejected, wire.ReasonQueueFull},
		{"other_site", "farm-2", "c", "c1", "x", wire.StatusQueued, ""},
		{"unknown_site", "farm-9", "a", "z1", "x", wire.StatusRejected, wire.ReasonUnknownSite},
		{"too_large", "farm-2", "d", "d1", "0123456789abcdefg", wire.StatusRejected, wire.ReasonTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := send(c.site, c.device, c.id, c.payload)
			if st.Status != c.status || st.Reason != c.reason {
				t.Fatalf("got %s (%s), want %s (%s)", st.Status, st.Reason, c.status, c.reason)
			}
			got, err := q.Get(ctx, c.site, c.device, c.id)
			if err != nil || got.Status != c.status {
				t.Fatalf("get: %v %s", err, got.Status)
			}
		})
	}
	// The stream holds exactly the queued ones (a1 once).
	list, err := q.List(ctx, "farm-1", "a")
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %v %d", err, len(list))
	}
}

func TestSendBadRequests(t *testing.T) {
	q, _ := newQueue(t, command.Config{})
	ctx := context.Background()
	qos2 := byte(2)
	for name, req := range map[string]wire.CommandRequest{
		"no_topic":      {PayloadText: text("x")},
		"wildcard":      {Topic: "a/+", PayloadText: text("x")},
		"dollar":        {Topic: "$SYS/x"},
		"qos2":          {Topic: "a", QoS: &qos2},
		"bad_ttl":       {Topic: "a", TTL: "soon"},
		"ttl_above_max": {Topic: "a", TTL: "9000h"},
		"bad_id":        {Topic: "a", ID: "has space"},
		"both_payloads": {Topic: "a", PayloadText: text("x"), Payload: []byte("y")},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := q.Send(ctx, "farm-1", "dev", req); !errors.Is(err, command.ErrBadRequest) {
				t.Fatalf("err %v, want ErrBadRequest", err)
			}
		})
	}
}

// TestFold: status records published as an edge's forwarder would (record
// per message on the _command-status stream) move the state forward, once
// each, whatever their order and repetitions.
func TestFold(t *testing.T) {
	q, js := newQueue(t, command.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: wire.StreamName(wire.DefaultPrefix, wire.CommandStatusTopic),
		Subjects: []string{wire.StreamSubjects(wire.DefaultPrefix, wire.CommandStatusTopic)}}); err != nil {
		t.Fatal(err)
	}
	st, err := q.Send(ctx, "farm-1", "dev", wire.CommandRequest{Topic: "cmd", PayloadText: text("go")})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = q.RunFold(ctx) }()
	defer func() { cancel(); <-done }()

	enc, err := wire.NewEncoder(wire.DefaultPrefix, wire.Origin{Site: "farm-1", Node: "pi-a", Topic: wire.CommandStatusTopic})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	seq := []wire.CommandStatus{wire.StatusAtEdge, wire.StatusDelivered, wire.StatusAtEdge, wire.StatusDelivered, wire.StatusSucceeded, wire.StatusFailed}
	for i, s := range seq {
		b, _ := json.Marshal(wire.CommandStatusRecord{Version: 1, ID: st.ID, Site: "farm-1", Device: "dev", Status: s, Time: now.Add(time.Duration(i) * time.Millisecond), Node: "pi-a"})
		m, err := enc.Msg(wire.Record{Offset: int64(i), Value: b})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	natstest.WaitFor(t, 10*time.Second, func() error {
		got, err := q.Get(ctx, "farm-1", "dev", st.ID)
		if err != nil {
			return err
		}
		var hist []wire.CommandStatus
		for _, h := range got.History {
			hist = append(hist, h.Status)
		}
		if fmt.Sprint(hist) != "[queued at_edge delivered succeeded]" {
			return fmt.Errorf("history %v", hist)
		}
		return nil
	})
}

// TestExpiredInCentre: a command still queued past its time to live reads
// expired; a delivered status the edge reports later (it delivered in
// time, the record was on its way) replaces that inferred expiry.
func TestExpiredInCentre(t *testing.T) {
	q, _ := newQueue(t, command.Config{})
	ctx := context.Background()
	st, err := q.Send(ctx, "farm-1", "dev", wire.CommandRequest{Topic: "cmd", TTL: "1s"})
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 5*time.Second, func() error {
		got, err := q.Get(ctx, "farm-1", "dev", st.ID)
		if err != nil {
			return err
		}
		if got.Status != wire.StatusExpired || got.Reason != wire.ReasonExpiredInCentre {
			return fmt.Errorf("status %s (%s)", got.Status, got.Reason)
		}
		return nil
	})
}

// TestNATSAPI: the same send and get over NATS request/reply.
func TestNATSAPI(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := srv.Connect()
	q, err := command.New(js, wire.DefaultPrefix, command.Config{}, knownSites{"farm-1": true}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := q.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for subj, h := range map[string]func(*nats.Msg){wire.CommandSendSubject(wire.DefaultPrefix): q.HandleSend, wire.CommandGetSubject(wire.DefaultPrefix): q.HandleGet} {
		sub, err := nc.Subscribe(subj, h)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	request := func(subj string, v any) wire.CommandReply {
		t.Helper()
		b, _ := json.Marshal(v)
		m, err := nc.Request(subj, b, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r wire.CommandReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := request(wire.CommandSendSubject(wire.DefaultPrefix), wire.CommandRequest{Site: "farm-1", Device: "dev", Topic: "cmd/dev", PayloadText: text("go"), ID: "n-1"})
	if r.Error != "" || r.CommandState == nil || r.Status != wire.StatusQueued || r.ID != "n-1" {
		t.Fatalf("send: %+v", r)
	}
	r = request(wire.CommandGetSubject(wire.DefaultPrefix), wire.CommandQuery{Site: "farm-1", Device: "dev", ID: "n-1"})
	if r.Error != "" || r.CommandState == nil || string(r.Payload) != "go" {
		t.Fatalf("get: %+v", r)
	}
	r = request(wire.CommandGetSubject(wire.DefaultPrefix), wire.CommandQuery{Site: "farm-1", Device: "dev", ID: "nope"})
	if r.Error == "" || r.CommandState != nil {
		t.Fatalf("get unknown: %+v", r)
	}
	r = request(wire.CommandSendSubject(wire.DefaultPrefix), wire.CommandRequest{Site: "farm-1", Device: "dev", Topic: "a/#"})
	if r.Error == "" {
		t.Fatalf("bad send: %+v", r)
	}
}
