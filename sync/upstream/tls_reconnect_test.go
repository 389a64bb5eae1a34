package upstream

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/outpost-edge/outpost/core/natstest"
	"github.com/outpost-edge/outpost/core/wire"
	"github.com/outpost-edge/outpost/edge/log"
)

// TestTLSServerCertReplaced: the centre comes back with a certificate the
// forwarder does not trust (a rotation gone wrong). The failure must be
// visible: logged with the TLS error and counted. nats.go calls its
// ReconnectErrHandler only when the dial fails, not when the TLS handshake
// after it fails; the forwarder reads nc.LastError while reconnecting
// (noteHandshakeError). Before that it logged only "disconnected err=EOF".
func TestTLSServerCertReplaced(t *testing.T) {
	dir := t.TempDir()
	good := newPKI(t, dir, "good")
	other := newPKI(t, dir, "other")
	serverTLS := func(p testPKI) *tls.Config {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.serverCert, KeyFile: p.serverKey, CaFile: good.caFile, Verify: true, Timeout: 5})
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	cur := serverTLS(good)
	srv := natstest.RunServer(t, natstest.WithOptions(func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSConfig, o.TLSTimeout = true, true, cur, 5
	}))
	_, js := srv.Connect(nats.RootCAs(good.caFile), nats.ClientCert(good.clientCert, good.clientKey))
	createStream(t, js, "telemetry", wire.TopicConfig{})
	tf := runTLSForwarder(t, srv.URL(), good.tlsConfig(), 1, func(l *log.Log) { appendN(t, l, "telemetry", 0, 100, 100) })
	l, f, logs, reg := tf.l, tf.f, tf.logs, tf.reg
	waitForwarded(t, f, 10*time.Second, 1)

	srv.Stop()
	cur = serverTLS(other) // signed by a CA the forwarder does not trust
	srv.Start()
	appendN(t, l, "telemetry", 0, 50, 100)
	natstest.WaitFor(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "x509: certificate signed by unknown authority") {
			return fmt.Errorf("TLS failure not logged:\n%s", logs.String())
		}
		if n := metricValue(t, reg, "outpost_upstream_connect_errors_total", "kind", "other"); n < 1 {
			return fmt.Errorf("no connect error counted")
		}
		return nil
	})
}
