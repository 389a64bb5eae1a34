package mqtt_test

import (
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/outpost-edge/outpost/bridge/mqtt"
)

// connectRaw sends a CONNECT with the given keepalive and returns the
// broker's CONNACK.
func connectRaw(t *testing.T, addr, id string, version byte, keepalive uint16) (*raw, packets.Packet) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &raw{tb: t, conn: c, version: version, in: make(chan packets.Packet, 16)}
	t.Cleanup(func() { c.Close() })
	go r.readLoop()
	r.send(packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect:         packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: keepalive, ClientIdentifier: id},
	})
	ack := r.next(5 * time.Second)
	if ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("got %v, want CONNACK", ack.FixedHeader.Type)
	}
	return r, ack
}

// mqtt.limits.keepalive_max: MQTT 5 clients asking for more (or none) are
// told the cap in CONNACK; 3.1.1 clients asking for more are refused with
// 0x02 and counted; a keepalive within the cap is left alone.
func TestKeepaliveMax(t *testing.T) {
	e := newEnv(t, envOpts{hookCfg: func(c *mqtt.Config) { c.KeepaliveMax = 30 * time.Second }})
	for _, c := range []struct {
		name      string
		version   byte
		keepalive uint16
		code      byte
		server    uint16 // Server Keep Alive in CONNACK; 0: none
	}{
		{"v5 above", 5, 60, 0, 30},
		{"v5 none", 5, 0, 0, 30},
		{"v5 within", 5, 30, 0, 0},
		{"v311 within", 4, 20, 0, 0},
		{"v311 above", 4, 31, 0x02, 0},
		{"v311 none", 4, 0, 0x02, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, ack := connectRaw(t, e.addr, "k", c.version, c.keepalive)
			if ack.ReasonCode != c.code {
				t.Fatalf("CONNACK code %#x, want %#x", ack.ReasonCode, c.code)
			}
			if got := ack.Properties.ServerKeepAlive; (c.server != 0) != ack.Properties.ServerKeepAliveFlag || got != c.server {
				t.Fatalf("Server Keep Alive %d (set %v), want %d", got, ack.Properties.ServerKeepAliveFlag, c.server)
			}
			if c.code != 0 {
				r.closed(5 * time.Second)
			}
		})
	}
	if n := e.counter(t, "outpost_mqtt_keepalive_refused_total", "", ""); n != 2 {
		t.Fatalf("keepalive refusals %v, want 2", n)
	}
}
