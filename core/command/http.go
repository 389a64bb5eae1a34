package command

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"unicode"
	"unicode/utf8"

	"github.com/outpost-edge/outpost/core/wire"
)

// Paths of the HTTP API (core/service mounts them).
const (
	PathCommands = "/v1/sites/{site}/devices/{device}/commands"
	PathCommand  = "/v1/sites/{site}/devices/{device}/commands/{id}"
)

// Register mounts the HTTP API on mux:
//
//	POST PathCommands   send (202 {"id","status":"queued"}; rejected: 409, too large: 413, with the state)
//	GET  PathCommand    the command, its status and history
//	GET  PathCommands   the device's recent commands
//
// Errors are JSON {"error": "..."}.
func (q *Queue) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST "+PathCommands, q.handleSend)
	mux.HandleFunc("GET "+PathCommands, q.handleList)
	mux.HandleFunc("GET "+PathCommand, q.handleGet)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadRequest):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (q *Queue) handleSend(w http.ResponseWriter, r *http.Request) {
	var req wire.CommandRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, int64(q.cfg.MaxPayloadBytes)*2+64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "command: bad request: body: " + err.Error()})
		return
	}
	st, err := q.Send(r.Context(), r.PathValue("site"), r.PathValue("device"), req)
	if err != nil {
		writeErr(w, err)
		return
	}
	code := http.StatusAccepted
	if st.Status == wire.StatusRejected {
		code = http.StatusConflict
		if st.Reason == wire.ReasonTooLarge {
			code = http.StatusRequestEntityTooLarge
		}
	}
	st.Payload = nil
	writeJSON(w, code, sendReply(st))
}

// sendReply is the answer to a send: the id and the status, plus the
// reason when rejected.
func sendReply(st wire.CommandState) map[string]any {
	out := map[string]any{"id": st.ID, "status": st.Status, "expires": st.Expires}
	if st.Reason != "" {
		out["reason"] = st.Reason
	}
	return out
}

// stateView is a command's state as the HTTP API shows it: payload and
// result also as text when they are printable UTF-8.
type stateView struct {
	wire.CommandState
	PayloadText *string `json:"payload_text,omitempty"`
	ResultText  *string `json:"result_text,omitempty"`
}

func asText(b []byte) *string {
	if len(b) == 0 || !utf8.Valid(b) {
		return nil
	}
	for _, r := range string(b) {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return nil
		}
	}
	s := string(b)
	return &s
}

func view(st wire.CommandState) stateView {
	return stateView{CommandState: st, PayloadText: asText(st.Payload), ResultText: asText(st.Result)}
}

func (q *Queue) handleGet(w http.ResponseWriter, r *http.Request) {
	st, err := q.Get(r.Context(), r.PathValue("site"), r.PathValue("device"), r.PathValue("id"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, view(st))
}

func (q *Queue) handleList(w http.ResponseWriter, r *http.Request) {
	list, err := q.List(r.Context(), r.PathValue("site"), r.PathValue("device"))
	if err != nil {
		writeErr(w, err)
		return
	}
	views := make([]stateView, len(list))
	for i, st := range list {
		views[i] = view(st)
	}
	writeJSON(w, http.StatusOK, map[string]any{"commands": views})
}
