package mqtt

import (
	"fmt"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// errKeepalive: an MQTT 3.1.1 client asked for a keepalive above
// Config.KeepaliveMax (or none), which 3.1.1 cannot be told to change.
var errKeepalive = packets.ErrClientIdentifierNotValid

// OnConnect applies Config.KeepaliveMax (as mosquitto's max_keepalive). A
// keepalive of 0 means "never time me out", which is above any cap. An
// MQTT 5 client gets the cap as Server Keep Alive in CONNACK and is held to
// it [MQTT-3.2.2-21]; an MQTT 3.1.1 client cannot be told, so it is refused
// with CONNACK 0x02 (identifier rejected, the code mosquitto uses) and a
// log line naming the limit, rather than disconnected later for a silence
// it was allowed.
func (h *Hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	limit := uint16(h.cfg.KeepaliveMax / time.Second)
	ka := pk.Connect.Keepalive
	if limit == 0 || (ka != 0 && ka <= limit) {
		return nil
	}
	if cl.Properties.ProtocolVersion == 5 {
		capKeepalive(cl, limit)
		return nil
	}
	h.m.keepaliveRefused.Inc()
	h.cfg.Logger.Warn("mqtt: connection refused: keepalive above mqtt.limits.keepalive_max, which MQTT 3.1.1 cannot be told to lower",
		"client", cl.ID, "listener", cl.Net.Listener, "keepalive", time.Duration(ka)*time.Second, "keepalive_max", h.cfg.KeepaliveMax)
	refuseConnect(h.cfg.Server, cl, errKeepalive)
	return fmt.Errorf("mqtt: keepalive %ds above the limit %ds: %w", ka, limit, errKeepalive)
}
