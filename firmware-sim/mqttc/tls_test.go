package mqttc_test

import (
	"context"
	"crypto/tls"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost/firmware-sim/internal/mochitest"
	"github.com/outpost-edge/outpost/firmware-sim/mqttc"
)

func TestTLS(t *testing.T) {
	url, tc := mochitest.StartTLS(t)
	var acked atomic.Int64
	c := mqttc.New(mqttc.Config{Broker: url, ClientID: "tls", CleanStart: true, TLS: tc, InFlight: 10},
		mqttc.Handlers{OnAck: func(mqttc.Ack) { acked.Add(1) }})
	defer c.Close()
	if _, err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if err := c.Publish(context.Background(), &mqttc.Message{Topic: "tls/x", QoS: 1, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitIdle(context.Background()); err != nil || acked.Load() != 100 {
		t.Fatalf("acked %d, err %v", acked.Load(), err)
	}

	// Without the broker's certificate in the roots, the handshake must fail.
	bad := mqttc.New(mqttc.Config{Broker: url, ClientID: "tls2", CleanStart: true, TLS: &tls.Config{MinVersion: tls.VersionTLS12}}, mqttc.Handlers{})
	defer bad.Close()
	if _, err := bad.Connect(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted broker: err = %v", err)
	}
}
