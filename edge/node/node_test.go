package node_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/outpost-edge/outpost/bridge/route"
	"github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/node"
)

func TestNodeIngestAndHTTPAPI(t *testing.T) {
	r := start(t, testConfig(t), node.Options{})
	conn, err := net.Dial("tcp", r.MQTTAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx := context.Background()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "dev-1", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	for i := 0; i < 3; i++ {
		if _, err := c.Publish(ctx, &paho.Publish{QoS: 1, Topic: "site/dev-1/temp", Payload: []byte(fmt.Sprintf(`{"t":%d}`, i)),
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "unit", Value: "C"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	p := route.Partition([]byte("dev-1"), route.DefaultPartitions)
	var page recordsPage
	getJSON(t, fmt.Sprintf("http://%s/v1/topics/telemetry/partitions/%d/records?offset=0&limit=10", r.HTTPAddr(), p), &page)
	if len(page.Records) != 3 || page.NextOffset != 3 {
		t.Fatalf("page %+v", page)
	}
	for i, rec := range page.Records {
		if rec.Offset != int64(i) || rec.ValueText == nil || *rec.ValueText != fmt.Sprintf(`{"t":%d}`, i) || b64(rec.Key) != "dev-1" ||
			b64(rec.Headers["mqtt.topic"]) != "site/dev-1/temp" || b64(rec.Headers["mqtt.user.unit"]) != "C" || b64(rec.Headers["mqtt.qos"]) != "1" {
			t.Fatalf("record %d: %+v", i, rec)
		}
	}
	var topics struct {
		Topics []struct {
			Name       string `json:"name"`
			Partitions []struct {
				Partition int32 `json:"partition"`
				EndOffset int64 `json:"end_offset"`
			} `json:"partitions"`
		} `json:"topics"`
	}
	getJSON(t, "http://"+r.HTTPAddr()+"/v1/topics", &topics)
	if len(topics.Topics) != 1 || topics.Topics[0].Name != "telemetry" || len(topics.Topics[0].Partitions) != 8 || topics.Topics[0].Partitions[p].EndOffset != 3 {
		t.Fatalf("topics %+v", topics)
	}
	resp, err := http.Get("http://" + r.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`outpost_mqtt_acks_total{reason="success"} 3`, `outpost_mqtt_ingest_messages_total{qos="1"} 3`, "outpost_log_fsync_seconds_bucket", "outpost_mqtt_connections 1", "outpost_log_bytes", "outpost_mqtt_clients_connected 1", "outpost_mqtt_messages_dropped_total 0",
		fmt.Sprintf(`outpost_log_end_offset{partition="%d",topic="telemetry"} 3`, p)} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}

// holdFS holds back fdatasync of .log files while held is set.
type holdFS struct {
	mu      sync.Mutex
	release chan struct{}
	entered chan struct{}
}

func (h *holdFS) hold() {
	h.mu.Lock()
	h.release = make(chan struct{})
	h.mu.Unlock()
}

func (h *holdFS) open() {
	h.mu.Lock()
	if h.release != nil {
		close(h.release)
		h.release = nil
	}
	h.mu.Unlock()
}

func (h *holdFS) openFile(name string, flag int, perm os.FileMode) (log.File, error) {
	f, err := log.OSOpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	// The fdatasync that makes a record durable: the journal's, or the
	// segment's when the journal is off.
	return &heldFile{File: f, h: h, log: strings.HasSuffix(name, ".log") || strings.HasSuffix(name, ".wal")}, nil
}

type heldFile struct {
	log.File
	h   *holdFS
	log bool
}

func (f *heldFile) Sync() error {
	f.h.mu.Lock()
	wait := f.h.release
	f.h.mu.Unlock()
	if wait != nil && f.log {
		select {
		case f.h.entered <- struct{}{}:
		default:
		}
		<-wait
	}
	return f.File.Sync()
}

// SIGTERM (context cancellation) stops accepting, waits for the publish in
// flight to become durable, acknowledges it, then closes the log.
func TestGracefulShutdownAcksInFlight(t *testing.T) {
	cfg := testConfig(t)
	h := &holdFS{entered: make(chan struct{}, 16)}
	r := start(t, cfg, node.Options{OpenFile: h.openFile})
	acked := make(chan error, 1)
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + r.MQTTAddrs()[0]).SetClientID("late").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	h.hold()
	tok := c.Publish("a", 1, false, "in flight")
	go func() { tok.Wait(); acked <- tok.Error() }()
	select {
	case <-h.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no fsync")
	}
	r.cancel()
	// New connections are refused while the node drains.
	waitFor(t, 5*time.Second, func() error {
		if c, err := net.DialTimeout("tcp", r.MQTTAddrs()[0], time.Second); err == nil {
			c.Close()
			return fmt.Errorf("still accepting")
		}
		return nil
	})
	select {
	case err := <-acked:
		t.Fatalf("acked before durable: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	h.open()
	select {
	case err := <-acked:
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no PUBACK during shutdown")
	}
	if err := <-r.done; err != nil {
		t.Fatalf("run: %v", err)
	}
	close(r.done)
	l, err := log.Open(filepath.Join(cfg.DataDir, "log"), log.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var n int64
	for _, ti := range l.Topics() {
		for _, p := range ti.Partitions {
			n += p.EndOffset
		}
	}
	if n != 1 {
		t.Fatalf("%d records after restart", n)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// A client announcing a 256 MiB packet is disconnected without the node
// allocating it, before CONNECT (listener gate) and after (mochi's
// maximum packet size).
func TestHugePacketAnnouncementRefused(t *testing.T) {
	r := start(t, testConfig(t), node.Options{})
	announce := []byte{0x80 | 0x7f, 0xff, 0xff, 0x7f} // 268435455 bytes
	before := heapInUse()
	var conns []net.Conn
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", r.MQTTAddrs()[0])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(append([]byte{0x10}, announce...))
		c.Write([]byte("partial"))
		conns = append(conns, c)
	}
	for i := 0; i < 4; i++ {
		c, _ := rawConnect(t, r.MQTTAddrs()[0], fmt.Sprintf("big-%d", i))
		defer c.Close()
		c.Write(append([]byte{0x30}, announce...))
		c.Write([]byte("partial"))
		conns = append(conns, c)
	}
	for i, c := range conns {
		if !closedByPeer(c, 5*time.Second) {
			t.Fatalf("connection %d announcing 256 MiB still open", i)
		}
	}
	if grew := int64(heapInUse()) - int64(before); grew > 32<<20 {
		t.Fatalf("heap grew by %d MiB", grew>>20)
	}
}

func TestConnectionLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.MQTT.Limits.MaxClients = 3
	cfg.MQTT.Limits.ConnectTimeout = 300 * time.Millisecond
	r := start(t, cfg, node.Options{})
	addr := r.MQTTAddrs()[0]
	// A connection that never sends CONNECT is closed after the timeout.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if !closedByPeer(idle, 5*time.Second) {
		t.Fatal("silent connection not closed")
	}
	idle.Close()
	var open []net.Conn
	waitFor(t, 5*time.Second, func() error {
		for len(open) < 3 {
			c, _ := rawConnect(t, addr, fmt.Sprintf("c%d", len(open)))
			open = append(open, c)
		}
		return nil
	})
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedByPeer(extra, 5*time.Second) {
		t.Fatal("connection over max_clients not closed")
	}
	// A first packet that is not CONNECT is refused.
	open[0].Close()
	open = open[1:]
	bad, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Write([]byte{0x30, 0x05, 0, 1, 'a', 'b', 'c'})
	if !closedByPeer(bad, 5*time.Second) {
		t.Fatal("PUBLISH before CONNECT not refused")
	}
}

func TestConnectRateLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.MQTT.Limits.ConnectRate = 1
	cfg.MQTT.Limits.ConnectBurst = 3
	r := start(t, cfg, node.Options{})
	refused := 0
	t0 := time.Now()
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", r.MQTTAddrs()[0])
		if err != nil {
			t.Fatal(err)
		}
		c.Write(connectBytes(fmt.Sprintf("r%d", i)))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("connection %d: no CONNACK: %v", i, err)
		}
		switch {
		case b[0] == 0x20 && b[3] == 0x03:
			// Refused with 0x03 (server unavailable), not a reset.
			refused++
		case b[0] != 0x20 || b[3] != 0:
			t.Fatalf("connection %d: CONNACK %x", i, b)
		}
		c.Close()
	}
	// At most the burst plus one token per second elapsed (and one for
	// rounding) may be admitted.
	admitted := 8 - refused
	if limit := 3 + int(time.Since(t0).Seconds()) + 1; admitted > limit || refused == 0 {
		t.Fatalf("%d of 8 rapid connections admitted with rate 1/s burst 3 (limit %d)", admitted, limit)
	}
}

// 10,000 short-lived sessions leave the heap where it was: clean sessions
// are forgotten by mochi and by the hooks.
func TestShortLivedSessionsDoNotGrowMemory(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	cfg := testConfig(t)
	cfg.MQTT.Limits.ConnectRate = 0
	r := start(t, cfg, node.Options{})
	addr := r.MQTTAddrs()[0]
	session := func(i int) {
		c, br := rawConnect(t, addr, fmt.Sprintf("s-%d", i))
		if i%10 != 0 {
			c.Write([]byte{0xe0, 0})
			closedByPeer(c, 5*time.Second)
			c.Close()
			return
		}
		// Every tenth session publishes at QoS 1 before its DISCONNECT.
		topic := "t/x"
		body := append([]byte{0, byte(len(topic))}, topic...)
		body = append(body, 0, 1, 'v')
		c.Write(append([]byte{0x32, byte(len(body))}, body...))
		ack := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(br, ack); err != nil || ack[0] != 0x40 {
			t.Errorf("session %d: puback %x %v", i, ack, err)
		}
		c.Write([]byte{0xe0, 0})
		closedByPeer(c, 5*time.Second)
		c.Close()
	}
	for i := 0; i < 200; i++ { // warm up pools and maps
		session(i)
	}
	before := heapInUse()
	goroutines := runtime.NumGoroutine()
	t0 := time.Now()
	for i := 200; i < 200+n; i++ {
		session(i)
	}
	elapsed := time.Since(t0)
	waitFor(t, 10*time.Second, func() error {
		if g := runtime.NumGoroutine(); g > goroutines+10 {
			return fmt.Errorf("%d goroutines, %d before", g, goroutines)
		}
		return nil
	})
	after := heapInUse()
	t.Logf("%d sessions in %v; heap in use %d KiB -> %d KiB", n, elapsed.Round(time.Millisecond), before>>10, after>>10)
	if int64(after)-int64(before) > 8<<20 {
		t.Fatalf("heap grew by %d KiB over %d short-lived sessions", (int64(after)-int64(before))>>10, n)
	}
}

func writeCerts(t *testing.T) (certFile, keyFile, caFile string, clientCert tls.Certificate, roots *x509.CertPool) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvDER, srvKey := issue("edge", x509.ExtKeyUsageServerAuth)
	kb, _ := x509.MarshalECPrivateKey(srvKey)
	certFile, keyFile = write("edge.crt", "CERTIFICATE", srvDER), write("edge.key", "EC PRIVATE KEY", kb)
	caFile = write("ca.crt", "CERTIFICATE", caDER)
	cliDER, cliKey := issue("gw-1", x509.ExtKeyUsageClientAuth)
	clientCert = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return
}

// TLS with client certificates and WebSocket listeners, configured the way
// an operator would, carry publishes into the log.
func TestTLSAndWebSocketListeners(t *testing.T) {
	certFile, keyFile, caFile, clientCert, roots := writeCerts(t)
	cfg := testConfig(t)
	cfg.MQTT.Listeners = []node.ListenerConfig{
		{Type: "tls", Address: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile},
		{Type: "ws", Address: "127.0.0.1:0"},
	}
	cfg.Auth.Users = append(cfg.Auth.Users, authUserCN("gw-1"))
	r := start(t, cfg, node.Options{})
	addrs := r.MQTTAddrs()
	tc := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, ServerName: "127.0.0.1"}
	for _, b := range []struct{ url, id string }{{"ssl://" + addrs[0], "gw-1"}, {"ws://" + addrs[1], "dashboard"}} {
		o := paho3.NewClientOptions().AddBroker(b.url).SetClientID(b.id).SetAutoReconnect(false).SetTLSConfig(tc)
		c := paho3.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: %v", b.url, tok.Error())
		}
		if tok := c.Publish("x/"+b.id, 1, false, "hello"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s publish: %v", b.url, tok.Error())
		}
		c.Disconnect(10)
	}
	// Without a client certificate the TLS listener refuses the handshake.
	o := paho3.NewClientOptions().AddBroker("ssl://" + addrs[0]).SetClientID("nocert").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}).SetConnectTimeout(3 * time.Second)
	if tok := paho3.NewClient(o).Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		t.Fatal("TLS client without certificate accepted")
	}
	var total int64
	for _, ti := range r.Log().Topics() {
		for _, p := range ti.Partitions {
			total += p.EndOffset
		}
	}
	if total != 2 {
		t.Fatalf("%d records", total)
	}
}

// Persistent sessions are capped: at max_sessions a new client evicts the
// longest-disconnected session, and is refused when all are connected.
func TestSessionCap(t *testing.T) {
	cfg := testConfig(t)
	cfg.MQTT.Limits.MaxClients = 3
	cfg.MQTT.Limits.MaxSessions = 3
	r := start(t, cfg, node.Options{})
	addr := r.MQTTAddrs()[0]
	persistent := func(id string) (net.Conn, bool) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(connectFlags(id, 0x00))
		ack := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadFull(c, ack)
		c.SetReadDeadline(time.Time{})
		return c, err == nil && ack[0] == 0x20 && ack[3] == 0
	}
	for i := 0; i < 3; i++ {
		c, ok := persistent(fmt.Sprintf("p%d", i))
		if !ok {
			t.Fatalf("session %d refused", i)
		}
		c.Write([]byte{0xe0, 0})
		closedByPeer(c, 5*time.Second)
		c.Close()
	}
	// The client sees the close before the listener has counted the
	// connection out; MaxClients would refuse the next one until it has.
	waitFor(t, 5*time.Second, func() error {
		if got := metric(t, r.HTTPAddr(), "outpost_mqtt_connections"); got != "0" {
			return fmt.Errorf("outpost_mqtt_connections = %q, want 0", got)
		}
		return nil
	})
	var live []net.Conn
	defer func() {
		for _, c := range live {
			c.Close()
		}
	}()
	for i := 3; i < 6; i++ {
		c, ok := persistent(fmt.Sprintf("p%d", i))
		if !ok {
			t.Fatalf("session %d refused although disconnected sessions could be evicted", i)
		}
		live = append(live, c)
	}
	metric := func(name string) string { return metric(t, r.HTTPAddr(), name) }
	if got := metric("outpost_mqtt_sessions_evicted_total"); got != "3" {
		t.Fatalf("evicted %q, want 3", got)
	}
	if got := metric("outpost_mqtt_sessions"); got != "4" { // 3 clients + mochi's inline client
		t.Fatalf("sessions %q, want 4", got)
	}
	// All sessions connected: the next one is refused (here by
	// max_clients, which max_sessions may not be below).
	if c, ok := persistent("p-extra"); ok {
		c.Close()
		t.Fatal("client admitted beyond the session cap")
	}
}

func TestHTTPToken(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.Token = "s3cret"
	r := start(t, cfg, node.Options{})
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", "http://"+r.HTTPAddr()+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get("/v1/topics", ""); c != http.StatusUnauthorized {
		t.Fatalf("no token: %d", c)
	}
	if c := get("/v1/topics", "wrong"); c != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", c)
	}
	if c := get("/v1/topics", "s3cret"); c != 200 {
		t.Fatalf("token: %d", c)
	}
	if c := get("/healthz", ""); c != 200 {
		t.Fatalf("healthz without token: %d", c)
	}
}

// Services run while the node serves and end, after the drain, before the
// log closes.
func TestServicesLifecycle(t *testing.T) {
	var mu sync.Mutex
	var events []string
	svc := func(ctx context.Context, n *node.Node) error {
		mu.Lock()
		events = append(events, "start")
		mu.Unlock()
		<-ctx.Done()
		// The log is still open: a forwarder can read until it returns.
		p, err := n.Log().Partition(route.DefaultTopic, 0)
		if err == nil {
			_, err = p.Read(context.Background(), p.StartOffset(), 1<<10)
		}
		mu.Lock()
		events = append(events, fmt.Sprintf("stop log=%v", err))
		mu.Unlock()
		return nil
	}
	r := start(t, testConfig(t), node.Options{Services: []func(context.Context, *node.Node) error{svc}})
	if r.Identity().NodeID == "" || r.Meta() == nil {
		t.Fatal("identity or meta missing")
	}
	r.stop(t)
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 || events[0] != "start" || events[1] != "stop log=<nil>" {
		t.Fatalf("events %v", events)
	}
}

// metric returns the value of an unlabelled metric from the node's
// /metrics, or "" if it is absent.
func metric(t *testing.T, httpAddr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}
