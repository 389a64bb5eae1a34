package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	elog "github.com/outpost-edge/outpost/edge/log"
	"github.com/outpost-edge/outpost/edge/meta"
)

type topicsJSON struct {
	Topics []topicJSON `json:"topics"`
}

type topicJSON struct {
	Name                string          `json:"name"`
	Partitions          []partitionJSON `json:"partitions"`
	RetentionBytes      int64           `json:"retention_bytes"`
	RetentionAgeSeconds float64         `json:"retention_age_seconds"`
}

type partitionJSON struct {
	Partition   int32                 `json:"partition"`
	StartOffset int64                 `json:"start_offset"`
	EndOffset   int64                 `json:"end_offset"`
	Bytes       int64                 `json:"bytes"`
	Segments    int                   `json:"segments"`
	Error       string                `json:"error,omitempty"`
	Cursors     map[string]cursorJSON `json:"cursors,omitempty"`
	// Replication is the partition's replica state (Config.Replication).
	Replication any `json:"replication,omitempty"`
}

type cursorJSON struct {
	Offset int64 `json:"offset"`
	// Lag is how many records the cursor is behind the end offset.
	Lag int64 `json:"lag"`
}

func (h *handler) topics(w http.ResponseWriter, r *http.Request) {
	cursors, err := h.cursors(r.Context())
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	out := topicsJSON{Topics: []topicJSON{}}
	for _, ti := range h.cfg.Log.Topics() {
		out.Topics = append(out.Topics, h.topicJSON(ti, cursors))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) topic(w http.ResponseWriter, r *http.Request) {
	ti, ok := h.findTopic(w, r.PathValue("topic"))
	if !ok {
		return
	}
	cursors, err := h.cursors(r.Context())
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.topicJSON(ti, cursors))
}

func (h *handler) partition(w http.ResponseWriter, r *http.Request) {
	ti, ok := h.findTopic(w, r.PathValue("topic"))
	if !ok {
		return
	}
	id, ok := parsePartition(w, r)
	if !ok {
		return
	}
	cursors, err := h.cursors(r.Context())
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	tj := h.topicJSON(ti, cursors)
	if int(id) >= len(tj.Partitions) {
		writeError(w, http.StatusNotFound, "topic "+ti.Name+" has no partition "+strconv.Itoa(int(id))+"; it has "+
			strconv.Itoa(len(tj.Partitions))+", numbered from 0")
		return
	}
	writeJSON(w, http.StatusOK, tj.Partitions[id])
}

// findTopic returns a topic's description, or answers 404.
func (h *handler) findTopic(w http.ResponseWriter, name string) (elog.TopicInfo, bool) {
	for _, ti := range h.cfg.Log.Topics() {
		if ti.Name == name {
			return ti, true
		}
	}
	writeError(w, http.StatusNotFound, "no topic "+strconv.Quote(name)+"; GET /v1/topics lists the topics")
	return elog.TopicInfo{}, false
}

func (h *handler) topicJSON(ti elog.TopicInfo, cursors map[string]map[meta.PartitionKey]int64) topicJSON {
	tj := topicJSON{
		Name:                ti.Name,
		Partitions:          []partitionJSON{},
		RetentionBytes:      ti.Config.RetentionBytes,
		RetentionAgeSeconds: ti.Config.RetentionAge.Seconds(),
	}
	for _, pi := range ti.Partitions {
		pj := partitionJSON{
			Partition:   pi.Partition,
			StartOffset: pi.StartOffset,
			EndOffset:   pi.EndOffset,
			Bytes:       pi.Bytes,
			Segments:    pi.Segments,
		}
		if p, err := h.cfg.Log.Partition(ti.Name, pi.Partition); err == nil {
			if err := p.Failed(); err != nil {
				pj.Error = err.Error()
			}
		}
		if h.cfg.Replication != nil {
			pj.Replication = h.cfg.Replication(ti.Name, pi.Partition)
		}
		key := meta.PartitionKey{Topic: ti.Name, Partition: pi.Partition}
		for name, cs := range cursors {
			if off, ok := cs[key]; ok {
				if pj.Cursors == nil {
					pj.Cursors = make(map[string]cursorJSON)
				}
				pj.Cursors[name] = cursorJSON{Offset: off, Lag: max(0, pi.EndOffset-off)}
			}
		}
		tj.Partitions = append(tj.Partitions, pj)
	}
	return tj
}

// cursors returns every cursor's positions, or nil without Config.Meta.
func (h *handler) cursors(ctx context.Context) (map[string]map[meta.PartitionKey]int64, error) {
	if h.cfg.Meta == nil {
		return nil, nil
	}
	names, err := h.cfg.Meta.CursorNames(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[meta.PartitionKey]int64, len(names))
	for _, n := range names {
		if out[n], err = h.cfg.Meta.Cursors(ctx, n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// serverError answers 500 (503 when the store or log is closed, which
// means the node is shutting down) and logs it.
func (h *handler) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, meta.ErrClosed) || errors.Is(err, elog.ErrClosed) {
		writeError(w, http.StatusServiceUnavailable, "the node is shutting down: "+err.Error()+"; retry once it is back")
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client left
	}
	h.cfg.Logger.Warn("api: request failed", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, err.Error()+"; see the node's log")
}

// parsePartition reads the {partition} path value, or answers 400.
func parsePartition(w http.ResponseWriter, r *http.Request) (int32, bool) {
	s := r.PathValue("partition")
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "partition: "+strconv.Quote(s)+" is not a partition number (0, 1, …)")
		return 0, false
	}
	return int32(n), true
}
