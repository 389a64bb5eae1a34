package schema

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/core/wire"
)

// ContentType is the media type of every response, as Confluent's.
const ContentType = "application/vnd.schemaregistry.v1+json"

// MountPaths are the paths Handler serves, for a composition root that
// shares its HTTP listener: the root paths of the Confluent API, so the
// listener's address is itself a schema.registry.url.
var MountPaths = []string{"/subjects", "/subjects/", "/schemas", "/schemas/", "/config", "/config/",
	"/compatibility/", "/mode", "/mode/", "/contexts"}

// Handler serves the Confluent Schema Registry REST API (the subset in the
// package doc). Bodies are capped at twice the schema size limit plus
// 64 KiB (a schema escaped in JSON grows); larger ones get 413.
func (r *Registry) Handler() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, f func(w http.ResponseWriter, req *http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
			v, err := f(w, req)
			if err != nil {
				writeError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, v)
		})
	}
	h("GET /schemas/types", func(http.ResponseWriter, *http.Request) (any, error) {
		return []string{wire.SchemaTypeJSON, wire.SchemaTypeAvro}, nil
	})
	h("GET /contexts", func(http.ResponseWriter, *http.Request) (any, error) { return []string{"."}, nil })
	h("GET /schemas", r.getSchemas)
	h("GET /schemas/ids/{id}", r.getSchemaByID)
	mux.HandleFunc("GET /schemas/ids/{id}/schema", r.getRawSchemaByID)
	h("GET /schemas/ids/{id}/subjects", r.getIDSubjects)
	h("GET /schemas/ids/{id}/versions", r.getIDVersions)
	h("GET /subjects", r.getSubjects)
	h("POST /subjects/{subject}", r.postLookup)
	h("DELETE /subjects/{subject}", r.deleteSubjectHTTP)
	h("GET /subjects/{subject}/versions", r.getVersions)
	h("POST /subjects/{subject}/versions", r.postRegister)
	h("GET /subjects/{subject}/versions/{version}", r.getVersion)
	mux.HandleFunc("GET /subjects/{subject}/versions/{version}/schema", r.getRawVersion)
	h("DELETE /subjects/{subject}/versions/{version}", r.deleteVersionHTTP)
	h("GET /subjects/{subject}/versions/{version}/referencedby", r.getReferencedBy)
	h("POST /compatibility/subjects/{subject}/versions/{version}", r.postCompatibility)
	h("POST /compatibility/subjects/{subject}/versions", r.postCompatibility)
	for _, p := range []string{"/config", "/config/{subject}"} {
		h("GET "+p, r.getConfig)
		h("PUT "+p, r.putConfig)
		h("DELETE "+p, r.deleteConfig)
	}
	for _, p := range []string{"/mode", "/mode/{subject}"} {
		h("GET "+p, r.getMode)
		h("PUT "+p, r.putMode)
		h("DELETE "+p, r.deleteModeHTTP)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		writeError(w, &Error{Status: http.StatusNotFound, Code: 404, Message: "HTTP 404 Not Found: no schema registry endpoint " + req.Method + " " + req.URL.Path})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = errorf(ErrStore, "%v", err)
	}
	writeJSON(w, e.Status, map[string]any{"error_code": e.Code, "message": e.Message})
}

func (r *Registry) ctx(req *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(req.Context(), r.requestTimeout)
}

func flag(req *http.Request, name string) bool {
	b, _ := strconv.ParseBool(req.URL.Query().Get(name))
	return b
}

// decode reads a JSON body into v, capped.
func (r *Registry) decode(w http.ResponseWriter, req *http.Request, v any) error {
	limit := int64(2*r.cfg.MaxSchemaBytes + 64<<10)
	body := http.MaxBytesReader(w, req.Body, limit)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(ErrRequestTooLarge, "request body over %d bytes; schemas are limited to %d bytes (schema_registry.max_schema_bytes)", limit, r.cfg.MaxSchemaBytes)
		}
		return errorf(ErrBadRequest, "request body is not the JSON this endpoint takes: %v", err)
	}
	return nil
}

// parseVersion accepts "latest", -1 (latest) and 1..2^31-1.
func parseVersion(s string) (int, error) {
	if s == "latest" || s == "-1" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > math.MaxInt32 {
		return 0, errorf(ErrInvalidVersion, "The specified version '%s' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"", s)
	}
	return int(n), nil
}

func parseID(s string) (int, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil || n < 1 {
		return 0, errorf(ErrSchemaNotFound, "Schema %s not found", s)
	}
	return int(n), nil
}

// schemaResponse is a schema as the API shows it; schemaType is omitted
// for Avro, as Confluent does.
type schemaResponse struct {
	Subject    string                 `json:"subject,omitempty"`
	Version    int                    `json:"version,omitempty"`
	ID         int                    `json:"id,omitempty"`
	SchemaType string                 `json:"schemaType,omitempty"`
	Schema     string                 `json:"schema"`
	References []wire.SchemaReference `json:"references,omitempty"`
	MaxID      int                    `json:"maxId,omitempty"`
}

func responseFor(subject string, v wire.SubjectVersion, rec wire.SchemaRecord) schemaResponse {
	t := rec.Type
	if t == wire.SchemaTypeAvro {
		t = ""
	}
	return schemaResponse{Subject: subject, Version: v.Version, ID: rec.ID, SchemaType: t, Schema: rec.Schema, References: rec.References}
}

func (r *Registry) record(req *http.Request, id int) (wire.SchemaRecord, error) {
	s, err := r.storeFor()
	if err != nil {
		return wire.SchemaRecord{}, err
	}
	ctx, cancel := r.ctx(req)
	defer cancel()
	return s.record(ctx, id)
}

// schemaByID serves an ID used by a subject version (soft-deleted ones
// count); an ID all of whose versions were permanently deleted is not
// found, as in Confluent, until it is registered again.
func (r *Registry) schemaByID(req *http.Request) (wire.SchemaRecord, error) {
	id, err := parseID(req.PathValue("id"))
	if err != nil {
		return wire.SchemaRecord{}, err
	}
	if _, err := r.storeFor(); err != nil {
		return wire.SchemaRecord{}, err
	}
	if len(r.st.usages(id, true)) == 0 {
		return wire.SchemaRecord{}, errorf(ErrSchemaNotFound, "Schema %d not found", id)
	}
	return r.record(req, id)
}

func (r *Registry) getSchemaByID(_ http.ResponseWriter, req *http.Request) (any, error) {
	rec, err := r.schemaByID(req)
	if err != nil {
		return nil, err
	}
	resp := responseFor("", wire.SubjectVersion{}, rec)
	resp.ID = 0 // Confluent's body has no id here
	if flag(req, "fetchMaxId") {
		resp.MaxID = r.st.maxID()
	}
	return resp, nil
}

func (r *Registry) getRawSchemaByID(w http.ResponseWriter, req *http.Request) {
	rec, err := r.schemaByID(req)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	_, _ = w.Write([]byte(rec.Schema))
}

func (r *Registry) getIDSubjects(_ http.ResponseWriter, req *http.Request) (any, error) {
	id, err := parseID(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if _, err := r.storeFor(); err != nil {
		return nil, err
	}
	out := []string{}
	for _, u := range r.st.usages(id, flag(req, "deleted")) {
		if !slices.Contains(out, u.Subject) {
			out = append(out, u.Subject)
		}
	}
	if len(out) == 0 {
		return nil, errorf(ErrSchemaNotFound, "Schema %d not found", id)
	}
	return out, nil
}

func (r *Registry) getIDVersions(_ http.ResponseWriter, req *http.Request) (any, error) {
	id, err := parseID(req.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if _, err := r.storeFor(); err != nil {
		return nil, err
	}
	out := r.st.usages(id, flag(req, "deleted"))
	if len(out) == 0 {
		return nil, errorf(ErrSchemaNotFound, "Schema %d not found", id)
	}
	return out, nil
}

func (r *Registry) getSchemas(_ http.ResponseWriter, req *http.Request) (any, error) {
	if _, err := r.storeFor(); err != nil {
		return nil, err
	}
	q := req.URL.Query()
	deleted, latestOnly := flag(req, "deleted"), flag(req, "latestOnly")
	out := []schemaResponse{}
	for _, name := range r.st.subjectNames(q.Get("subjectPrefix"), deleted, false) {
		rec, _ := r.st.subject(name)
		vs := visible(rec.Versions, deleted, false)
		if latestOnly && len(vs) > 0 {
			vs = vs[len(vs)-1:]
		}
		for _, v := range vs {
			sr, err := r.record(req, v.ID)
			if err != nil {
				return nil, err
			}
			out = append(out, responseFor(name, v, sr))
		}
	}
	return out, nil
}

func (r *Registry) getSubjects(_ http.ResponseWriter, req *http.Request) (any, error) {
	if _, err := r.storeFor(); err != nil {
		return nil, err
	}
	return r.st.subjectNames(req.URL.Query().Get("subjectPrefix"), flag(req, "deleted"), flag(req, "deletedOnly")), nil
}

func (r *Registry) getVersions(_ http.ResponseWriter, req *http.Request) (any, error) {
	if _, err := r.storeFor(); err != nil {
		return nil, err
	}
	subject := req.PathValue("subject")
	rec, _ := r.st.subject(subject)
	vs := visible(rec.Versions, flag(req, "deleted"), flag(req, "deletedOnly"))
	if len(vs) == 0 {
		return nil, errorf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
	}
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = v.Version
	}
	return out, nil
}

func (r *Registry) versionRecord(req *http.Request) (wire.SubjectVersion, wire.SchemaRecord, error) {
	if _, err := r.storeFor(); err != nil {
		return wire.SubjectVersion{}, wire.SchemaRecord{}, err
	}
	n, err := parseVersion(req.PathValue("version"))
	if err != nil {
		return wire.SubjectVersion{}, wire.SchemaRecord{}, err
	}
	v, _, err := r.version(req.PathValue("subject"), n, flag(req, "deleted"))
	if err != nil {
		return v, wire.SchemaRecord{}, err
	}
	rec, err := r.record(req, v.ID)
	return v, rec, err
}

func (r *Registry) getVersion(_ http.ResponseWriter, req *http.Request) (any, error) {
	v, rec, err := r.versionRecord(req)
	if err != nil {
		return nil, err
	}
	return responseFor(req.PathValue("subject"), v, rec), nil
}

func (r *Registry) getRawVersion(w http.ResponseWriter, req *http.Request) {
	_, rec, err := r.versionRecord(req)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	_, _ = w.Write([]byte(rec.Schema))
}

func (r *Registry) getReferencedBy(_ http.ResponseWriter, req *http.Request) (any, error) {
	if _, err := r.storeFor(); err != nil {
		return nil, err
	}
	n, err := parseVersion(req.PathValue("version"))
	if err != nil {
		return nil, err
	}
	subject := req.PathValue("subject")
	v, _, err := r.version(subject, n, true)
	if err != nil {
		return nil, err
	}
	ids := r.st.referrers(subject, v.Version)
	if ids == nil {
		ids = []int{}
	}
	return ids, nil
}

func (r *Registry) postRegister(w http.ResponseWriter, req *http.Request) (any, error) {
	var body schemaRequest
	if err := r.decode(w, req, &body); err != nil {
		return nil, err
	}
	ctx, cancel := r.ctx(req)
	defer cancel()
	id, _, err := r.register(ctx, req.PathValue("subject"), body, flag(req, "normalize"))
	if err != nil {
		return nil, err
	}
	return map[string]int{"id": id}, nil
}

func (r *Registry) postLookup(w http.ResponseWriter, req *http.Request) (any, error) {
	var body schemaRequest
	if err := r.decode(w, req, &body); err != nil {
		return nil, err
	}
	ctx, cancel := r.ctx(req)
	defer cancel()
	subject := req.PathValue("subject")
	v, rec, err := r.lookup(ctx, subject, body, flag(req, "normalize"), flag(req, "deleted"))
	if err != nil {
		return nil, err
	}
	return responseFor(subject, v, rec), nil
}

func (r *Registry) deleteSubjectHTTP(_ http.ResponseWriter, req *http.Request) (any, error) {
	ctx, cancel := r.ctx(req)
	defer cancel()
	return r.deleteSubject(ctx, req.PathValue("subject"), flag(req, "permanent"))
}

func (r *Registry) deleteVersionHTTP(_ http.ResponseWriter, req *http.Request) (any, error) {
	n, err := parseVersion(req.PathValue("version"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := r.ctx(req)
	defer cancel()
	return r.deleteVersion(ctx, req.PathValue("subject"), n, flag(req, "permanent"))
}

type compatibilityResponse struct {
	IsCompatible bool     `json:"is_compatible"`
	Messages     []string `json:"messages,omitempty"`
}

func (r *Registry) postCompatibility(w http.ResponseWriter, req *http.Request) (any, error) {
	n := 0
	if s := req.PathValue("version"); s != "" {
		var err error
		if n, err = parseVersion(s); err != nil {
			return nil, err
		}
	}
	var body schemaRequest
	if err := r.decode(w, req, &body); err != nil {
		return nil, err
	}
	ctx, cancel := r.ctx(req)
	defer cancel()
	msgs, err := r.checkAgainst(ctx, req.PathValue("subject"), n, body, flag(req, "normalize"))
	if err != nil {
		return nil, err
	}
	resp := compatibilityResponse{IsCompatible: len(msgs) == 0}
	if flag(req, "verbose") {
		resp.Messages = msgs
		if resp.Messages == nil {
			resp.Messages = []string{}
		}
	}
	return resp, nil
}

// configResponse carries the level under both names: GET answers
// compatibilityLevel (Confluent's docs and clients agree), PUT answers
// compatibility, and for DELETE the docs say compatibilityLevel while
// franz-go reads compatibility, so it carries both (clients win).
type configResponse struct {
	Level      Level `json:"compatibilityLevel,omitempty"`
	LevelOnPut Level `json:"compatibility,omitempty"`
}

func (r *Registry) getConfig(_ http.ResponseWriter, req *http.Request) (any, error) {
	if _, err := r.storeFor(); err != nil {
		return nil, err
	}
	subject := req.PathValue("subject")
	if l := r.subjectLevel(subject); l != nil {
		return configResponse{Level: *l}, nil
	}
	if subject != "" && !flag(req, "defaultToGlobal") {
		return nil, errorf(ErrSubjectNoConfig, "Subject '%s' does not have subject-level compatibility configured", subject)
	}
	return configResponse{Level: r.st.level("")}, nil
}

func (r *Registry) putConfig(w http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	if subject != "" {
		if err := r.checkSubject(subject); err != nil {
			return nil, err
		}
	}
	var body struct {
		Compatibility string `json:"compatibility"`
	}
	if err := r.decode(w, req, &body); err != nil {
		return nil, err
	}
	l, ok := ParseLevel(body.Compatibility)
	if !ok {
		return nil, errorf(ErrInvalidLevel, "Invalid compatibility level %q. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE", body.Compatibility)
	}
	ctx, cancel := r.ctx(req)
	defer cancel()
	if err := r.setLevel(ctx, subject, l); err != nil {
		return nil, err
	}
	return configResponse{LevelOnPut: l}, nil
}

func (r *Registry) deleteConfig(_ http.ResponseWriter, req *http.Request) (any, error) {
	ctx, cancel := r.ctx(req)
	defer cancel()
	l, err := r.deleteLevel(ctx, req.PathValue("subject"))
	if err != nil {
		return nil, err
	}
	return configResponse{Level: l, LevelOnPut: l}, nil
}

type modeResponse struct {
	Mode Mode `json:"mode"`
}

func (r *Registry) getMode(_ http.ResponseWriter, req *http.Request) (any, error) {
	if _, err := r.storeFor(); err != nil {
		return nil, err
	}
	subject := req.PathValue("subject")
	if m := r.subjectMode(subject); m != nil {
		return modeResponse{*m}, nil
	}
	if subject != "" && !flag(req, "defaultToGlobal") {
		return nil, errorf(ErrSubjectNoMode, "Subject '%s' does not have subject-level mode configured", subject)
	}
	return modeResponse{r.st.mode("")}, nil
}

func (r *Registry) putMode(w http.ResponseWriter, req *http.Request) (any, error) {
	subject := req.PathValue("subject")
	if subject != "" {
		if err := r.checkSubject(subject); err != nil {
			return nil, err
		}
	}
	var body modeResponse
	if err := r.decode(w, req, &body); err != nil {
		return nil, err
	}
	m, ok := ParseMode(string(body.Mode))
	if !ok {
		return nil, errorf(ErrInvalidMode, "Invalid mode %q. Valid values are READWRITE, READONLY, READONLY_OVERRIDE, IMPORT", body.Mode)
	}
	if cur := r.st.mode(subject); cur == ModeReadOnlyOverride && m != ModeReadOnlyOverride && !flag(req, "force") {
		return nil, errorf(ErrNotPermitted, "Subject '%s' is in READONLY_OVERRIDE mode; add ?force=true to change it", strings.TrimSpace(subject))
	}
	ctx, cancel := r.ctx(req)
	defer cancel()
	if err := r.setMode(ctx, subject, m, flag(req, "force")); err != nil {
		return nil, err
	}
	return modeResponse{m}, nil
}

func (r *Registry) deleteModeHTTP(_ http.ResponseWriter, req *http.Request) (any, error) {
	ctx, cancel := r.ctx(req)
	defer cancel()
	m, err := r.deleteMode(ctx, req.PathValue("subject"))
	if err != nil {
		return nil, err
	}
	return modeResponse{m}, nil
}
