package node_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/outpost-edge/outpost/edge/node"
)

// mqtt.limits.keepalive_max reaches the broker: a 3.1.1 client asking for
// 60 s under a 30 s cap gets CONNACK 0x02 and is disconnected.
func TestKeepaliveMaxConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.MQTT.Limits.KeepaliveMax = 30 * time.Second
	r := start(t, cfg, node.Options{})
	c, err := net.Dial("tcp", r.MQTTAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(connectBytes("ka")); err != nil { // keepalive 60 s
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ack, []byte{0x20, 2, 0, 0x02}) {
		t.Fatalf("CONNACK %x, want 20020002", ack)
	}
	if !closedByPeer(c, 5*time.Second) {
		t.Fatal("refused connection left open")
	}
}
