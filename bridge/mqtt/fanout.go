package mqtt

import (
	"time"
)

// fanout delivers a durable publish to local subscribers and the retained
// store, through mochi (deliver, mochi.go).
//
// Message expiry counts from receipt [MQTT-3.3.2-6]: the time the publish
// waited for its commit is taken off its Message Expiry Interval, and a
// publish that expired while committing is stored but not delivered
// (outpost_mqtt_expired_before_fanout_total). mochi stamps the remaining
// interval at delivery and drops the message from an offline session's
// queue once it runs out (see dropExpiredQueued).
func (h *Hook) fanout(e *entry, now time.Time) {
	pk := e.pk
	if interval := pk.Properties.MessageExpiryInterval; interval > 0 {
		left := time.Duration(interval)*time.Second - now.Sub(e.at)
		if left <= 0 {
			h.m.expiredBeforeFanout.Inc()
			return
		}
		// Rounded up: a message with a fraction of a second left is still
		// delivered, as mochi does (never an interval of 0, which means
		// "no expiry").
		pk.Properties.MessageExpiryInterval = uint32((left + time.Second - 1) / time.Second)
	}
	deliver(h.cfg.Server, h.cfg.Logger, pk)
}
