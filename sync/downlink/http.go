package downlink

import (
	"encoding/json"
	"net/http"
)

// ServeHTTP answers GET /v1/commands: the commands queued at this node,
// per device, in delivery order.
func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"site": s.cfg.Site, "node": s.cfg.Node, "devices": s.Snapshot()})
}
