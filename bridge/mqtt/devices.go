package mqtt

import "time"

// DeviceStat is what the node counted of one device's session: publishes
// received since the session began (resumed sessions keep counting) and
// when the last one arrived.
type DeviceStat struct {
	Published   int64
	LastPublish time.Time
}

// DeviceStats returns the counts of every session the node keeps, by
// client id. Sessions are bounded by mqtt.limits.max_sessions, so is this.
func (h *Hook) DeviceStats() map[string]DeviceStat {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]DeviceStat, len(h.sessions))
	for id, s := range h.sessions {
		st := DeviceStat{Published: s.published.Load()}
		if ns := s.lastPublish.Load(); ns > 0 {
			st.LastPublish = time.Unix(0, ns)
		}
		out[id] = st
	}
	return out
}
