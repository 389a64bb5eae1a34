package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/outpost-edge/outpost/bridge/auth"
	bmqtt "github.com/outpost-edge/outpost/bridge/mqtt"
)

func hash(tb testing.TB, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	return string(h)
}

type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	server tls.Certificate
}

func newPKI(tb testing.TB) *pki {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{ca: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.server = p.issue(tb, "localhost", x509.ExtKeyUsageServerAuth)
	return p
}

func (p *pki) issue(tb testing.TB, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

type server struct {
	plain, tls string
}

func start(tb testing.TB, cfg auth.Config, p *pki) server {
	tb.Helper()
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	h, err := auth.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.AddHook(h, nil); err != nil {
		tb.Fatal(err)
	}
	g := bmqtt.NewGate(bmqtt.DefaultLimits(), nil)
	plain, _ := bmqtt.NewListener(bmqtt.ListenerConfig{ID: "plain", Type: bmqtt.TypeTCP, Address: "127.0.0.1:0", Gate: g, Server: srv})
	if err := srv.AddListener(plain); err != nil {
		tb.Fatal(err)
	}
	s := server{plain: plain.Address()}
	if p != nil {
		tl, _ := bmqtt.NewListener(bmqtt.ListenerConfig{ID: "tls", Type: bmqtt.TypeTLS, Address: "127.0.0.1:0", Gate: g, Server: srv,
			TLS: &tls.Config{Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.VerifyClientCertIfGiven}})
		if err := srv.AddListener(tl); err != nil {
			tb.Fatal(err)
		}
		s.tls = tl.Address()
	}
	if err := srv.Serve(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	return s
}

func connect(broker, id, user, pass string, tc *tls.Config) (paho3.Client, error) {
	o := paho3.NewClientOptions().AddBroker(broker).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetUsername(user).SetPassword(pass).SetConnectTimeout(5 * time.Second)
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	c := paho3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	return c, tok.Error()
}

func TestPasswordsAndAnonymous(t *testing.T) {
	s := start(t, auth.Config{
		Users:          []auth.User{{Username: "dev", PasswordHash: hash(t, "secret")}},
		AllowAnonymous: func(l string) bool { return l == "anon-only-here" },
	}, nil)
	if _, err := connect("tcp://"+s.plain, "a", "", "", nil); err == nil {
		t.Fatal("anonymous accepted on a listener that does not allow it")
	}
	if _, err := connect("tcp://"+s.plain, "b", "dev", "wrong", nil); err == nil {
		t.Fatal("bad password accepted")
	}
	if _, err := connect("tcp://"+s.plain, "c", "nobody", "secret", nil); err == nil {
		t.Fatal("unknown user accepted")
	}
	if _, err := connect("tcp://"+s.plain, "inline", "dev", "secret", nil); err == nil {
		t.Fatal("reserved client id accepted")
	}
	for i := 0; i < 2; i++ { // second time from the cache
		c, err := connect("tcp://"+s.plain, "d", "dev", "secret", nil)
		if err != nil {
			t.Fatalf("good password refused: %v", err)
		}
		c.Disconnect(10)
	}
}

func TestACL(t *testing.T) {
	s := start(t, auth.Config{Users: []auth.User{
		{Username: "dev", PasswordHash: hash(t, "pw"), Publish: []string{"sensors/dev/#"}, Subscribe: []string{"cmd/dev/+"}},
		{Username: "admin", PasswordHash: hash(t, "pw")},
	}}, nil)
	admin, err := connect("tcp://"+s.plain, "admin", "admin", "pw", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Disconnect(10)
	got := make(chan string, 10)
	tok := admin.Subscribe("#", 1, func(_ paho3.Client, m paho3.Message) { got <- m.Topic() })
	tok.WaitTimeout(5 * time.Second)

	lost := make(chan error, 1)
	o := paho3.NewClientOptions().AddBroker("tcp://" + s.plain).SetClientID("dev").SetUsername("dev").SetPassword("pw").
		SetAutoReconnect(false).SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err })
	dev := paho3.NewClient(o)
	if tok := dev.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer dev.Disconnect(10)
	// Subscription outside the ACL: refused in the SUBACK.
	st := dev.Subscribe("cmd/#", 1, nil)
	st.WaitTimeout(5 * time.Second)
	if r := st.(*paho3.SubscribeToken).Result()["cmd/#"]; r != 0x80 {
		t.Fatalf("suback for cmd/# = %#x, want 0x80", r)
	}
	st = dev.Subscribe("cmd/dev/+", 1, nil)
	st.WaitTimeout(5 * time.Second)
	if r := st.(*paho3.SubscribeToken).Result()["cmd/dev/+"]; r != 1 {
		t.Fatalf("suback for cmd/dev/+ = %#x, want 1", r)
	}
	// Allowed publish arrives.
	if tok := dev.Publish("sensors/dev/t", 1, false, "ok"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	select {
	case topic := <-got:
		if topic != "sensors/dev/t" {
			t.Fatalf("got %s", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("allowed publish not delivered")
	}
	// Denied QoS 1 publish: MQTT 3.1.1 gets disconnected, nothing delivered.
	dev.Publish("sensors/other/t", 1, false, "no")
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("denied publish did not disconnect the 3.1.1 client")
	}
	select {
	case topic := <-got:
		t.Fatalf("denied publish delivered on %s", topic)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestClientCertificate(t *testing.T) {
	p := newPKI(t)
	s := start(t, auth.Config{Users: []auth.User{{Username: "gw-1", Publish: []string{"gw/#"}}}}, p)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	good := p.issue(t, "gw-1", x509.ExtKeyUsageClientAuth)
	c, err := connect("ssl://"+s.tls, "gw", "", "", &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{good}})
	if err != nil {
		t.Fatalf("valid client certificate refused: %v", err)
	}
	c.Disconnect(10)
	stranger := p.issue(t, "gw-2", x509.ExtKeyUsageClientAuth)
	if _, err := connect("ssl://"+s.tls, "gw2", "", "", &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{stranger}}); err == nil {
		t.Fatal("certificate of an unknown user accepted")
	}
	if _, err := connect("ssl://"+s.tls, "gw3", "", "", &tls.Config{RootCAs: roots, ServerName: "localhost"}); err == nil {
		t.Fatal("TLS without certificate or password accepted as anonymous")
	}
	// A user with no password hash cannot log in with a password.
	if _, err := connect("ssl://"+s.tls, "gw4", "gw-1", "anything", &tls.Config{RootCAs: roots, ServerName: "localhost"}); err == nil {
		t.Fatal("password login for a certificate-only user accepted")
	}
}

func TestValidateNamesField(t *testing.T) {
	cases := map[string]auth.Config{
		"users[0].username":      {Users: []auth.User{{}}},
		"users[1].username":      {Users: []auth.User{{Username: "a"}, {Username: "a"}}},
		"users[0].password_hash": {Users: []auth.User{{Username: "a", PasswordHash: "plain"}}},
		"users[0].publish[0]":    {Users: []auth.User{{Username: "a", Publish: []string{"a/#/b"}}}},
	}
	for want, cfg := range cases {
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want mention of %s", err, want)
		}
	}
}

// MQTT 5 clients get PUBACK 0x87 for a publish outside their ACL, and keep
// their connection.
func TestACLDenialV5(t *testing.T) {
	s := start(t, auth.Config{Users: []auth.User{
		{Username: "dev", PasswordHash: hash(t, "pw"), Publish: []string{"sensors/dev/#"}},
	}}, nil)
	conn, err := net.Dial("tcp", s.plain)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "dev5", KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: "dev", PasswordFlag: true, Password: []byte("pw")}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	resp, err := c.Publish(ctx, &paho.Publish{QoS: 1, Topic: "sensors/other", Payload: []byte("x")})
	if err == nil || resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("denied publish: resp %+v err %v", resp, err)
	}
	if _, err := c.Publish(ctx, &paho.Publish{QoS: 1, Topic: "sensors/dev/t", Payload: []byte("x")}); err != nil {
		t.Fatalf("allowed publish after a denial: %v", err)
	}
}
