package upstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// testPKI is a CA with one server certificate (127.0.0.1) and one client
// certificate (CN testNode), as PEM files in a directory.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
}

// newPKI generates a fresh CA and its two leaf certificates in dir, with
// file names starting with name.
func newPKI(t testing.TB, dir, name string) testPKI {
	t.Helper()
	path := func(s string) string { return filepath.Join(dir, name+"-"+s+".pem") }
	p := testPKI{caFile: path("ca"), serverCert: path("server"), serverKey: path("server-key"),
		clientCert: path("client"), clientKey: path("client-key")}
	now := time.Now()
	caKey := genKey(t)
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca, err = x509.ParseCertificate(caDER); err != nil {
		t.Fatal(err)
	}
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP, certFile, keyFile string) {
		key := genKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, certFile, "CERTIFICATE", der)
		kb, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, keyFile, "PRIVATE KEY", kb)
	}
	leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)}, p.serverCert, p.serverKey)
	leaf(3, testNode, x509.ExtKeyUsageClientAuth, nil, p.clientCert, p.clientKey)
	return p
}

func genKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile copies src over dst by rename, as an operator's deploy would,
// so a reader never sees half a file.
func replaceFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// runTLSServer starts an embedded JetStream server that requires TLS with
// p's server certificate and a client certificate signed by p's CA, as
// tls { cert_file, key_file, ca_file, verify: true } in a server config.
func runTLSServer(t testing.TB, p testPKI) *natstest.Server {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.serverCert, KeyFile: p.serverKey, CaFile: p.caFile, Verify: true, Timeout: 5})
	if err != nil {
		t.Fatalf("server TLS config: %v", err)
	}
	return natstest.RunServer(t, natstest.WithOptions(func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, tc, 5
	}))
}

// TestTLS forwards over mutual TLS: the server requires a client
// certificate from its CA, and the forwarder presents Config.TLS's.
func TestTLS(t *testing.T) {
	pki := newPKI(t, t.TempDir(), "good")
	srv := runTLSServer(t, pki)
	// The server really refuses clients without TLS or without a client
	// certificate, so forwarding below proves the forwarder sends one.
	for name, opts := range map[string][]nats.Option{
		"no TLS":                {},
		"no client certificate": {nats.RootCAs(pki.caFile)},
	} {
		nc, err := nats.Connect(srv.URL(), append(opts, nats.Timeout(2*time.Second), nats.NoReconnect())...)
		if err == nil {
			nc.Close()
			t.Fatalf("%s: the server accepted the connection; the test server does not require client certificates", name)
		}
	}
	_, js := srv.Connect(nats.RootCAs(pki.caFile), nats.ClientCert(pki.clientCert, pki.clientKey))
	createStream(t, js, "telemetry", wire.TopicConfig{})

	tf := runTLSForwarder(t, srv.URL(), pki.tlsConfig(), 2, func(l *log.Log) {
		appendN(t, l, "telemetry", 0, 300, 100)
		appendN(t, l, "telemetry", 1, 200, 100)
	})
	l, f, logs, reg := tf.l, tf.f, tf.logs, tf.reg
	waitForwarded(t, f, 30*time.Second, 2)
	// Live records after the backlog, on the same connection.
	appendN(t, l, "telemetry", 0, 100, 100)
	appendN(t, l, "telemetry", 1, 150, 100)
	waitForwarded(t, f, 30*time.Second, 2)
	checkExactlyOnce(t, js, "telemetry", map[int32]int64{0: 400, 1: 350})

	// The server's view: the forwarder's connection is TLS and presented
	// the client certificate.
	cz, err := srv.NATSServer().Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range cz.Conns {
		if !strings.HasPrefix(c.Name, "outpost-upstream ") {
			continue
		}
		found = true
		if c.TLSVersion == "" {
			t.Errorf("forwarder connection %q is not TLS", c.Name)
		}
		if len(c.TLSPeerCerts) == 0 || !strings.Contains(c.TLSPeerCerts[0].Subject, "CN="+testNode) {
			t.Errorf("forwarder connection %q: peer certificates %+v, want CN=%s", c.Name, c.TLSPeerCerts, testNode)
		}
	}
	if !found {
		t.Errorf("no forwarder connection among %d on the server", len(cz.Conns))
	}
	if v := metricValue(t, reg, "outpost_upstream_connected"); v != 1 {
		t.Errorf("outpost_upstream_connected = %v, want 1", v)
	}
	if n := logs.Count("level=ERROR") + logs.Count("level=WARN"); n != 0 {
		t.Errorf("%d warnings or errors logged:\n%s", n, logs.String())
	}
}

// TestTLSMisconfigured: a CA that did not sign the server's certificate,
// or a client certificate the server does not trust, keeps the forwarder
// from connecting with a logged error naming the TLS failure and a counted
// connect error; nothing is forwarded, nothing is lost, and once the files
// are fixed on disk forwarding starts by itself (nats.go rereads them on
// every connection attempt) and delivers everything exactly once.
func TestTLSMisconfigured(t *testing.T) {
	dir := t.TempDir()
	good := newPKI(t, dir, "good")
	other := newPKI(t, dir, "other")

	cases := []struct {
		name string
		// bad returns the forwarder's TLS files (copies the test breaks);
		// fix repairs them on disk.
		bad func(t *testing.T, dir string) TLSConfig
		fix func(t *testing.T, c TLSConfig)
		// want is what the logged connect error must say.
		want string
	}{
		{
			name: "server not trusted",
			bad: func(t *testing.T, dir string) TLSConfig {
				c := TLSConfig{CAFile: filepath.Join(dir, "ca.pem"), CertFile: good.clientCert, KeyFile: good.clientKey}
				replaceFile(t, other.caFile, c.CAFile)
				return c
			},
			fix:  func(t *testing.T, c TLSConfig) { replaceFile(t, good.caFile, c.CAFile) },
			want: "x509: certificate signed by unknown authority",
		},
		{
			name: "client not trusted",
			bad: func(t *testing.T, dir string) TLSConfig {
				c := TLSConfig{CAFile: good.caFile, CertFile: filepath.Join(dir, "client.pem"), KeyFile: filepath.Join(dir, "client-key.pem")}
				replaceFile(t, other.clientCert, c.CertFile)
				replaceFile(t, other.clientKey, c.KeyFile)
				return c
			},
			fix: func(t *testing.T, c TLSConfig) {
				// Key first: a certificate with the old key fails to load,
				// which is one more failed attempt, not a wrong state.
				replaceFile(t, good.clientKey, c.KeyFile)
				replaceFile(t, good.clientCert, c.CertFile)
			},
			// The server's alert, or the server closing the connection
			// before the client reads it: either way a TLS error.
			want: "tls",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const topic = "telemetry"
			srv := runTLSServer(t, good)
			_, js := srv.Connect(nats.RootCAs(good.caFile), nats.ClientCert(good.clientCert, good.clientKey))
			createStream(t, js, topic, wire.TopicConfig{})
			bad := tc.bad(t, t.TempDir())
			tf := runTLSForwarder(t, srv.URL(), bad, 2, func(l *log.Log) {
				appendN(t, l, topic, 0, 200, 100)
				appendN(t, l, topic, 1, 100, 100)
			})
			l, f, logs, reg := tf.l, tf.f, tf.logs, tf.reg
			// The failure is reported once (the same error on every retry);
			// that the forwarder keeps trying shows when the fix is picked up.
			natstest.WaitFor(t, 15*time.Second, func() error {
				if n := metricValue(t, reg, "outpost_upstream_connect_errors_total", "kind", "other"); n < 1 {
					return fmt.Errorf("no connect error counted; log:\n%s", logs.String())
				}
				if !strings.Contains(connectFailure(logs.String()), tc.want) {
					return fmt.Errorf("no connect failure naming %q logged:\n%s", tc.want, logs.String())
				}
				if v := metricValue(t, reg, "outpost_upstream_lag_records", "topic", topic); v != 300 {
					return fmt.Errorf("outpost_upstream_lag_records = %v while TLS fails, want 300", v)
				}
				return nil
			})
			if n := strings.Count(logs.String(), "upstream: connect failed"); n != 1 {
				t.Errorf("%d connect failures logged; want the TLS failure once:\n%s", n, logs.String())
			}
			if v := metricValue(t, reg, "outpost_upstream_connected"); v != 0 {
				t.Errorf("outpost_upstream_connected = %v while TLS fails", v)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if n, err := streamMsgs(ctx, js, topic); err != nil || n != 0 {
				t.Fatalf("the stream holds %d messages (%v) although the forwarder never connected", n, err)
			}

			tc.fix(t, bad)
			appendN(t, l, topic, 1, 50, 100) // written while the fix rolls out
			waitForwarded(t, f, 30*time.Second, 2)
			checkExactlyOnce(t, js, topic, map[int32]int64{0: 200, 1: 150})
			if !strings.Contains(logs.String(), "upstream: connected") {
				t.Errorf("no connection logged after the fix:\n%s", logs.String())
			}
			if v := metricValue(t, reg, "outpost_upstream_connected"); v != 1 {
				t.Errorf("outpost_upstream_connected = %v after the fix", v)
			}
		})
	}
}

// connectFailure returns the forwarder's first "connect failed" log line.
func connectFailure(logs string) string {
	for l := range strings.Lines(logs) {
		if strings.Contains(l, "upstream: connect failed") {
			return l
		}
	}
	return ""
}

func (p testPKI) tlsConfig() TLSConfig {
	return TLSConfig{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}
}

type tlsForwarder struct {
	l    *log.Log
	f    *Forwarder
	logs *logBuf
	reg  *prometheus.Registry
}

// runTLSForwarder runs a forwarder with tc against url, for a log with one
// topic "telemetry" of parts partitions that fill writes before it starts.
func runTLSForwarder(t *testing.T, url string, tc TLSConfig, parts int32, fill func(*log.Log)) tlsForwarder {
	t.Helper()
	dir := t.TempDir()
	l := openLog(t, dir)
	st := openMeta(t, metaPath(dir))
	createTopic(t, l, "telemetry", parts)
	fill(l)
	lg, logs := newLogger(t)
	cfg := testConfig(url, lg)
	cfg.TLS = tc
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	f, err := New(t.Context(), cfg, l, st)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	return tlsForwarder{l: l, f: f, logs: logs, reg: reg}
}
