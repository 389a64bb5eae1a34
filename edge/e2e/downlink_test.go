package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-edge/outpost/bridge/auth"
	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/service"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/node"
	"github.com/outpost-edge/outpost/firmware-sim/fleet"
	"github.com/outpost-edge/outpost/internal/polltest"
)

// downlinkRig is a core and an edge node of site farm-1 on one real NATS
// server, as in production: commands go core → JetStream → edge → MQTT,
// statuses edge → forwarder → JetStream → core.
type downlinkRig struct {
	t       *testing.T
	nats    *natstest.Server
	coreURL string
	edgeCfg node.Config
	edge    *edgeRun
}

type edgeRun struct {
	n      *node.Node
	cancel context.CancelFunc
	done   chan error
}

func newDownlinkRig(t *testing.T, tune func(*node.Config)) *downlinkRig {
	t.Helper()
	return newRig(t, nil, tune)
}

// newRig is newDownlinkRig that also tunes core's config.
func newRig(t *testing.T, tuneCore func(*service.Config), tune func(*node.Config)) *downlinkRig {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped under -short")
	}
	r := &downlinkRig{t: t, nats: natstest.RunServer(t)}
	ccfg := service.DefaultConfig()
	ccfg.NATS.URL = r.nats.URL()
	ccfg.HTTP.Listen = "127.0.0.1:0"
	ccfg.Commands.DuplicateWindow = time.Second
	if tuneCore != nil {
		tuneCore(&ccfg)
	}
	svc, err := service.New(ccfg, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("core: %v", err)
		}
	})
	select {
	case <-svc.Started():
	case err := <-done:
		t.Fatalf("core: %v", err)
	}
	r.coreURL = "http://" + svc.HTTPAddr().String()

	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.MQTT.Address = "127.0.0.1:0"
	cfg.HTTP.Address = "127.0.0.1:0"
	cfg.Routes.DefaultPartitions = 1
	cfg.Upstream.URL = r.nats.URL()
	cfg.Upstream.Site = "farm-1"
	cfg.Upstream.Node = "pi-a"
	if tune != nil {
		tune(&cfg)
	}
	r.edgeCfg = cfg
	r.startEdge()
	t.Cleanup(r.stopEdge)
	// Core takes commands once /readyz says so (its stream and bucket are
	// set up after Started), and knows the site once the edge has reported.
	polltest.Until(t, 30*time.Second, func() error {
		resp, err := http.Get(r.coreURL + "/readyz")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", resp.StatusCode, b)
		}
		return nil
	})
	polltest.Until(t, 30*time.Second, func() error {
		var v struct {
			Sites []struct {
				Site string `json:"site"`
			} `json:"sites"`
		}
		if code, err := r.getJSON("/v1/sites", &v); err != nil || code != 200 {
			return fmt.Errorf("sites: %d %v", code, err)
		}
		if len(v.Sites) == 0 {
			return fmt.Errorf("no site reported yet")
		}
		return nil
	})
	return r
}

func (r *downlinkRig) startEdge() {
	r.t.Helper()
	n, err := node.Open(context.Background(), r.edgeCfg, node.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &edgeRun{n: n, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- n.Run(ctx) }()
	r.edge = e
	// Later starts must find the same ports.
	r.edgeCfg.MQTT.Address = n.MQTTAddrs()[0]
	r.edgeCfg.HTTP.Address = n.HTTPAddr()
}

func (r *downlinkRig) stopEdge() {
	if r.edge == nil {
		return
	}
	r.edge.cancel()
	if err := <-r.edge.done; err != nil {
		r.t.Errorf("edge: %v", err)
	}
	r.edge = nil
}

func (r *downlinkRig) getJSON(path string, v any) (int, error) {
	resp, err := http.Get(r.coreURL + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, json.Unmarshal(b, v)
}

type sendReply struct {
	ID     string             `json:"id"`
	Status wire.CommandStatus `json:"status"`
	Reason string             `json:"reason"`
	Error  string             `json:"error"`
}

func (r *downlinkRig) send(site, device string, body map[string]any) (int, sendReply) {
	r.t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(r.coreURL+"/v1/sites/"+site+"/devices/"+device+"/commands", "application/json", bytes.NewReader(b))
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out sendReply
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		r.t.Fatal(err)
	}
	if out.ID == "" && resp.StatusCode < 400 {
		r.t.Fatalf("send: %d with no id: %+v", resp.StatusCode, out)
	}
	if resp.StatusCode == http.StatusServiceUnavailable {
		r.t.Fatalf("send: core unavailable: %s", out.Error)
	}
	return resp.StatusCode, out
}

func (r *downlinkRig) state(device, id string) wire.CommandState {
	r.t.Helper()
	var st wire.CommandState
	if code, err := r.getJSON("/v1/sites/farm-1/devices/"+device+"/commands/"+id, &st); err != nil || code != 200 {
		r.t.Fatalf("get command %s: %d %v", id, code, err)
	}
	return st
}

// waitStatus waits until the command's status is want.
func (r *downlinkRig) waitStatus(device, id string, want wire.CommandStatus) wire.CommandState {
	r.t.Helper()
	var st wire.CommandState
	polltest.Until(r.t, 30*time.Second, func() error {
		st = r.state(device, id)
		if st.Status != want {
			return fmt.Errorf("command %s is %s (%s), want %s", id, st.Status, st.Reason, want)
		}
		return nil
	})
	return st
}

// device is a paho (MQTT 5) client; received carries what it gets.
type device struct {
	c        *paho.Client
	received chan *paho.Publish
}

func connectDevice(t *testing.T, addr, id string, clean bool, expiry uint32, subscribe string) *device {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{received: make(chan *paho.Publish, 64)}
	d.c = paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(p paho.PublishReceived) (bool, error) { d.received <- p.Packet; return true, nil },
	}})
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: clean}
	if expiry > 0 {
		cp.Properties = &paho.ConnectProperties{SessionExpiryInterval: &expiry}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.Connect(ctx, cp); err != nil {
		t.Fatal(err)
	}
	if subscribe != "" {
		if _, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: subscribe, QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	return d
}

func (d *device) next(t *testing.T, within time.Duration) *paho.Publish {
	t.Helper()
	select {
	case p := <-d.received:
		return p
	case <-time.After(within):
		t.Fatalf("device received nothing within %v", within)
		return nil
	}
}

func (d *device) nothing(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case p := <-d.received:
		t.Fatalf("device received %s %q, want nothing", p.Topic, p.Payload)
	case <-time.After(within):
	}
}

func statuses(st wire.CommandState) []wire.CommandStatus {
	var out []wire.CommandStatus
	for _, h := range st.History {
		out = append(out, h.Status)
	}
	return out
}

// TestDownlinkOnlineDevice: a command sent through core's HTTP API
// reaches a connected MQTT 5 device within a second with the remaining
// expiry, the command id as correlation data and a response topic; the
// device's answer there makes it succeeded; the history has every step
// once.
func TestDownlinkOnlineDevice(t *testing.T) {
	r := newDownlinkRig(t, nil)
	dev := connectDevice(t, r.edge.n.MQTTAddrs()[0], "valve-1", true, 0, "cmd/valve-1/#")

	start := time.Now()
	code, rep := r.send("farm-1", "valve-1", map[string]any{"topic": "cmd/valve-1/open", "payload_text": "open 30", "ttl": "10m", "id": "c-1"})
	if code != http.StatusAccepted || rep.Status != wire.StatusQueued || rep.ID != "c-1" {
		t.Fatalf("send: %d %+v", code, rep)
	}
	p := dev.next(t, time.Second)
	t.Logf("HTTP → device: %v", time.Since(start))
	if p.Topic != "cmd/valve-1/open" || string(p.Payload) != "open 30" {
		t.Fatalf("device got %s %q", p.Topic, p.Payload)
	}
	if p.Properties == nil || string(p.Properties.CorrelationData) != "c-1" {
		t.Fatalf("correlation data: %+v", p.Properties)
	}
	if p.Properties.MessageExpiry == nil || *p.Properties.MessageExpiry < 590 || *p.Properties.MessageExpiry > 600 {
		t.Fatalf("message expiry: %v, want the remaining ~600 s", p.Properties.MessageExpiry)
	}
	if p.Properties.ResponseTopic != "outpost/commands/valve-1/c-1" {
		t.Fatalf("response topic %q", p.Properties.ResponseTopic)
	}
	r.waitStatus("valve-1", "c-1", wire.StatusDelivered)

	ctx := context.Background()
	if _, err := dev.c.Publish(ctx, &paho.Publish{QoS: 1, Topic: p.Properties.ResponseTopic, Payload: []byte(`{"ok":true,"opened":30}`)}); err != nil {
		t.Fatal(err)
	}
	st := r.waitStatus("valve-1", "c-1", wire.StatusSucceeded)
	if string(st.Result) != `{"ok":true,"opened":30}` {
		t.Errorf("result %q", st.Result)
	}
	want := []wire.CommandStatus{wire.StatusQueued, wire.StatusAtEdge, wire.StatusDelivered, wire.StatusSucceeded}
	if got := statuses(st); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("history %v, want %v", got, want)
	}

	// The same id again is the same command: not delivered twice.
	code, rep = r.send("farm-1", "valve-1", map[string]any{"topic": "cmd/valve-1/open", "payload_text": "open 30", "id": "c-1"})
	if code != http.StatusAccepted || rep.Status != wire.StatusSucceeded {
		t.Fatalf("resend: %d %+v", code, rep)
	}
	dev.nothing(t, 500*time.Millisecond)

	// A failed answer.
	r.send("farm-1", "valve-1", map[string]any{"topic": "cmd/valve-1/close", "payload_text": "close", "id": "c-2"})
	p = dev.next(t, 5*time.Second)
	dev.c.Publish(ctx, &paho.Publish{QoS: 1, Topic: p.Properties.ResponseTopic, Payload: []byte(`{"ok":false,"error":"jammed"}`)})
	r.waitStatus("valve-1", "c-2", wire.StatusFailed)
}

// TestDownlinkMosquittoSub: Debian's mosquitto_sub (MQTT 3.1.1) receives a
// command sent through core within a second; the command ends delivered.
func TestDownlinkMosquittoSub(t *testing.T) {
	sub := mosquittoTool(t, "mosquitto_sub")
	r := newDownlinkRig(t, nil)
	host, port, _ := strings.Cut(r.edge.n.MQTTAddrs()[0], ":")
	var out bytes.Buffer
	cmd := exec.Command(sub, "-h", host, "-p", port, "-V", "mqttv311", "-i", "pump-7", "-t", "cmd/pump-7", "-q", "1", "-C", "1", "-W", "20")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the subscription is in place: the command goes out only
	// to a device with a matching subscription anyway, so this only keeps
	// the latency figure honest.
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	code, rep := r.send("farm-1", "pump-7", map[string]any{"topic": "cmd/pump-7", "payload_text": "speed 3"})
	if code != http.StatusAccepted {
		t.Fatalf("send: %d %+v", code, rep)
	}
	werr := make(chan error, 1)
	go func() { werr <- cmd.Wait() }()
	select {
	case err := <-werr:
		if err != nil {
			t.Fatalf("mosquitto_sub: %v: %s", err, out.String())
		}
	case <-time.After(25 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("mosquitto_sub got nothing: %s", out.String())
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("delivered after %v, want within 1s", d)
	}
	if strings.TrimSpace(out.String()) != "speed 3" {
		t.Fatalf("mosquitto_sub printed %q", out.String())
	}
	r.waitStatus("pump-7", rep.ID, wire.StatusDelivered)
}

// TestDownlinkOfflineDevice: commands sent while the device is away are
// delivered when it comes back, with a persistent session and with a
// clean one, in order.
func TestDownlinkOfflineDevice(t *testing.T) {
	r := newDownlinkRig(t, nil)
	addr := r.edge.n.MQTTAddrs()[0]
	// A persistent session that subscribed, then went away.
	d := connectDevice(t, addr, "persist-1", true, 3600, "cmd/persist-1")
	_ = d.c.Disconnect(&paho.Disconnect{})
	for i := range 3 {
		r.send("farm-1", "persist-1", map[string]any{"topic": "cmd/persist-1", "payload_text": fmt.Sprint(i), "id": fmt.Sprintf("p-%d", i)})
		r.send("farm-1", "clean-1", map[string]any{"topic": "cmd/clean-1", "payload_text": fmt.Sprint(i), "id": fmt.Sprintf("k-%d", i)})
	}
	r.waitStatus("persist-1", "p-2", wire.StatusAtEdge)
	r.waitStatus("clean-1", "k-2", wire.StatusAtEdge)
	// The edge lists what it holds, per device, in delivery order.
	var held struct {
		Site    string `json:"site"`
		Devices []struct {
			Device   string `json:"device"`
			Commands []struct {
				ID string `json:"id"`
			} `json:"commands"`
		} `json:"devices"`
	}
	resp, err := http.Get("http://" + r.edge.n.HTTPAddr() + "/v1/commands")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&held)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(held); got != "{farm-1 [{clean-1 [{k-0} {k-1} {k-2}]} {persist-1 [{p-0} {p-1} {p-2}]}]}" {
		t.Fatalf("GET /v1/commands: %s", got)
	}

	p := connectDevice(t, addr, "persist-1", false, 3600, "")
	k := connectDevice(t, addr, "clean-1", true, 0, "cmd/clean-1")
	for i := range 3 {
		if got := string(p.next(t, 5*time.Second).Payload); got != fmt.Sprint(i) {
			t.Fatalf("persistent session: got %q, want %d (order)", got, i)
		}
		if got := string(k.next(t, 5*time.Second).Payload); got != fmt.Sprint(i) {
			t.Fatalf("clean session: got %q, want %d (order)", got, i)
		}
	}
	for i := range 3 {
		r.waitStatus("persist-1", fmt.Sprintf("p-%d", i), wire.StatusDelivered)
		r.waitStatus("clean-1", fmt.Sprintf("k-%d", i), wire.StatusDelivered)
	}
	p.nothing(t, 300*time.Millisecond)
	k.nothing(t, 300*time.Millisecond)
}

// TestDownlinkExpiry: a command with a 2 s time to live sent to a sleeping
// device is never delivered and ends expired.
func TestDownlinkExpiry(t *testing.T) {
	r := newDownlinkRig(t, nil)
	addr := r.edge.n.MQTTAddrs()[0]
	_, rep := r.send("farm-1", "sleepy", map[string]any{"topic": "cmd/sleepy", "payload_text": "wake", "ttl": "2s"})
	r.waitStatus("sleepy", rep.ID, wire.StatusAtEdge)
	time.Sleep(2500 * time.Millisecond) // the device sleeps past the TTL
	d := connectDevice(t, addr, "sleepy", true, 0, "cmd/sleepy")
	d.nothing(t, time.Second)
	st := r.waitStatus("sleepy", rep.ID, wire.StatusExpired)
	if st.Reason != wire.ReasonTTL {
		t.Errorf("reason %q", st.Reason)
	}
}

// TestDownlinkRejections: unknown site, payload too large and ACL refusal
// end rejected with their reason.
func TestDownlinkRejections(t *testing.T) {
	r := newDownlinkRig(t, func(c *node.Config) {
		allow := true
		c.Auth.AllowAnonymous = &allow
	})
	code, rep := r.send("nowhere", "x", map[string]any{"topic": "cmd/x", "payload_text": "hi"})
	if code != http.StatusConflict || rep.Status != wire.StatusRejected || rep.Reason != wire.ReasonUnknownSite {
		t.Errorf("unknown site: %d %+v", code, rep)
	}
	code, rep = r.send("farm-1", "x", map[string]any{"topic": "cmd/x", "payload_text": strings.Repeat("a", 70<<10)})
	if code != http.StatusRequestEntityTooLarge || rep.Status != wire.StatusRejected || rep.Reason != wire.ReasonTooLarge {
		t.Errorf("too large: %d %+v", code, rep)
	}
	code, rep = r.send("farm-1", "x", map[string]any{"topic": "cmd/#", "payload_text": "hi"})
	if code != http.StatusBadRequest || rep.Error == "" {
		t.Errorf("wildcard topic: %d %+v", code, rep)
	}
}

// TestDownlinkACL: a device whose ACL does not let it subscribe to the
// command's topic never gets it: the command ends rejected (acl); one it
// may subscribe to is delivered.
func TestDownlinkACL(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	r := newDownlinkRig(t, func(c *node.Config) {
		c.Auth.Users = []auth.User{{Username: "lamp-1", PasswordHash: string(hash), Subscribe: []string{"cmd/lamp-1/#"}}}
		no := false
		c.Auth.AllowAnonymous = &no
	})
	_, denied := r.send("farm-1", "lamp-1", map[string]any{"topic": "cmd/other/on", "payload_text": "on"})
	_, allowed := r.send("farm-1", "lamp-1", map[string]any{"topic": "cmd/lamp-1/on", "payload_text": "on"})
	r.waitStatus("lamp-1", allowed.ID, wire.StatusAtEdge)

	conn, err := net.Dial("tcp", r.edge.n.MQTTAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	received := make(chan *paho.Publish, 8)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(p paho.PublishReceived) (bool, error) { received <- p.Packet; return true, nil },
	}})
	ctx := context.Background()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "lamp-1", KeepAlive: 30, CleanStart: true,
		Username: "lamp-1", UsernameFlag: true, Password: []byte("secret"), PasswordFlag: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cmd/lamp-1/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	st := r.waitStatus("lamp-1", denied.ID, wire.StatusRejected)
	if st.Reason != wire.ReasonACL {
		t.Errorf("reason %q, want acl", st.Reason)
	}
	select {
	case p := <-received:
		if p.Topic != "cmd/lamp-1/on" {
			t.Fatalf("device got %s", p.Topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the allowed command was not delivered")
	}
	r.waitStatus("lamp-1", allowed.ID, wire.StatusDelivered)
	select {
	case p := <-received:
		t.Fatalf("device got %s too", p.Topic)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestDownlinkSiteOffline: commands sent while the site's edge is stopped,
// for longer than the commands stream's duplicate window, are delivered
// once each, in order, after it returns.
func TestDownlinkSiteOffline(t *testing.T) {
	r := newDownlinkRig(t, nil)
	r.stopEdge()
	var ids []string
	for i := range 5 {
		_, rep := r.send("farm-1", "meter-1", map[string]any{"topic": "cmd/meter-1", "payload_text": fmt.Sprint(i), "ttl": "1h"})
		if rep.Status != wire.StatusQueued {
			t.Fatalf("send %d: %+v", i, rep)
		}
		ids = append(ids, rep.ID)
	}
	// Longer than the duplicate window (the rig's core uses 1 s).
	time.Sleep(1500 * time.Millisecond)
	r.startEdge()
	d := connectDevice(t, r.edge.n.MQTTAddrs()[0], "meter-1", true, 0, "cmd/meter-1")
	for i := range 5 {
		if got := string(d.next(t, 10*time.Second).Payload); got != fmt.Sprint(i) {
			t.Fatalf("got %q, want %d", got, i)
		}
	}
	for _, id := range ids {
		st := r.waitStatus("meter-1", id, wire.StatusDelivered)
		if got := statuses(st); fmt.Sprint(got) != "[queued at_edge delivered]" {
			t.Errorf("%s: history %v", id, got)
		}
	}
	d.nothing(t, 500*time.Millisecond)
}

// TestDownlinkFirmwareSim: firmware-sim devices with Commands set
// subscribe to their command topic and answer; a command sent through core
// ends succeeded with the device's answer as its result (the demo's loop).
func TestDownlinkFirmwareSim(t *testing.T) {
	r := newDownlinkRig(t, nil)
	cfg := fleet.DefaultConfig()
	cfg.Broker = "tcp://" + r.edge.n.MQTTAddrs()[0]
	cfg.Site = "farm-1"
	cfg.Duration = time.Minute
	cfg.DrainTimeout = time.Second
	g := fleet.DefaultGroup()
	g.Devices = 2
	g.Commands = "cmd/{client}/#"
	cfg.Groups = []fleet.Group{g}
	fl, err := fleet.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _, _ = fl.Run(ctx) }()
	defer func() { cancel(); <-done }()
	dev := fl.Devices()[1]
	clientID := "farm-1-" + dev
	_, rep := r.send("farm-1", clientID, map[string]any{"topic": "cmd/" + clientID + "/rate", "payload_text": `{"rate":5}`})
	st := r.waitStatus(clientID, rep.ID, wire.StatusSucceeded)
	var ans struct {
		OK       bool   `json:"ok"`
		ID       string `json:"id"`
		Received string `json:"received"`
	}
	if err := json.Unmarshal(st.Result, &ans); err != nil || !ans.OK || ans.ID != rep.ID || ans.Received != `{"rate":5}` {
		t.Fatalf("result %s (%v)", st.Result, err)
	}
	if s := fl.Snapshot(); s.Commands != 1 || s.Answered != 1 {
		t.Errorf("fleet counted %d commands, %d answered", s.Commands, s.Answered)
	}
}

// TestDownlinkLatency measures the time from the HTTP call to core until
// an MQTT 5 device (paho) has the command, for commands sent one after
// another (core, JetStream, edge and device on this machine). It reports
// p50/p99; it asserts nothing about time.
func TestDownlinkLatency(t *testing.T) {
	r := newDownlinkRig(t, nil)
	dev := connectDevice(t, r.edge.n.MQTTAddrs()[0], "lat-1", true, 0, "cmd/lat-1")
	n := 100
	if os.Getenv("OUTPOST_LONG") != "" {
		n = 1000
	}
	var lat []time.Duration
	for i := range n {
		start := time.Now()
		r.send("farm-1", "lat-1", map[string]any{"topic": "cmd/lat-1", "payload_text": fmt.Sprint(i)})
		p := dev.next(t, 10*time.Second)
		lat = append(lat, time.Since(start))
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("got %q, want %d", p.Payload, i)
		}
	}
	slices.Sort(lat)
	t.Logf("HTTP call → device, %d commands in sequence: p50 %v, p99 %v, max %v", n, lat[n/2], lat[n*99/100], lat[n-1])
}

// TestDownlinkInFlightAtDisconnect: a device with a persistent session
// drops its connection with a command in flight (received, not
// acknowledged); on its next connection it gets the command once more,
// not twice (mochi's own copy of the in-flight message is dropped; the
// downlink resends), and the command ends delivered.
func TestDownlinkInFlightAtDisconnect(t *testing.T) {
	r := newDownlinkRig(t, nil)
	addr := r.edge.n.MQTTAddrs()[0]
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *paho.Publish, 4)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(p paho.PublishReceived) (bool, error) { got <- p.Packet; return true, nil },
		}})
	ctx := context.Background()
	expiry := uint32(3600)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "flaky-1", KeepAlive: 30, CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "cmd/flaky-1", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	_, rep := r.send("farm-1", "flaky-1", map[string]any{"topic": "cmd/flaky-1", "payload_text": "once"})
	select {
	case <-got: // received, never acknowledged
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered")
	}
	conn.Close() // the connection drops, no DISCONNECT
	if st := r.state("flaky-1", rep.ID); st.Status != wire.StatusAtEdge && st.Status != wire.StatusQueued {
		t.Fatalf("status %s before any PUBACK", st.Status)
	}

	d := connectDevice(t, addr, "flaky-1", false, 3600, "")
	if p := d.next(t, 5*time.Second); string(p.Payload) != "once" {
		t.Fatalf("got %q", p.Payload)
	}
	d.nothing(t, time.Second)
	r.waitStatus("flaky-1", rep.ID, wire.StatusDelivered)
}
