package mqtt_test

import (
	"testing"
	"time"

	"github.com/outpost-edge/outpost/bridge/mqtt"
)

// A connection refused by the gate whose CONNECT arrives is answered with a
// CONNACK that says why, not reset: MQTT 5 0x97 at max_connections and
// 0x9F at connect_rate, MQTT 3.1.1 0x03 for both.
func TestGateRefusalConnack(t *testing.T) {
	for _, c := range []struct {
		name    string
		limits  mqtt.Limits
		version byte
		code    byte
	}{
		{"max_connections v5", mqtt.Limits{MaxConnections: 1}, 5, 0x97},
		{"max_connections v311", mqtt.Limits{MaxConnections: 1}, 4, 0x03},
		{"connect_rate v5", mqtt.Limits{ConnectRate: 0.001, ConnectBurst: 1}, 5, 0x9F},
		{"connect_rate v311", mqtt.Limits{ConnectRate: 0.001, ConnectBurst: 1}, 4, 0x03},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := c.limits
			l.ConnectTimeout = 5 * time.Second
			e := newEnv(t, envOpts{listener: true, limits: &l})
			first, ack := connectRaw(t, e.addr, "first", c.version, 30)
			if ack.ReasonCode != 0 {
				t.Fatalf("first connection: CONNACK %#x", ack.ReasonCode)
			}
			r, ack := connectRaw(t, e.addr, "second", c.version, 30)
			if ack.ReasonCode != c.code {
				t.Fatalf("refused connection: CONNACK %#x, want %#x", ack.ReasonCode, c.code)
			}
			r.closed(5 * time.Second)
			first.none(50 * time.Millisecond) // the admitted one is untouched
		})
	}
}
