package schema

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/outpost-edge/outpost/core/wire"
)

// schemaRequest is the body of register, lookup and compatibility
// requests. metadata and ruleSet (Confluent data contracts) are accepted
// and ignored.
type schemaRequest struct {
	Schema     string                 `json:"schema"`
	SchemaType string                 `json:"schemaType,omitempty"`
	References []wire.SchemaReference `json:"references,omitempty"`
	ID         int                    `json:"id,omitempty"`
	Version    int                    `json:"version,omitempty"`
}

// candidate is a request's schema, checked, compacted, its references
// pinned to concrete versions, and parsed.
type candidate struct {
	rec wire.SchemaRecord // ID 0
	fp  string
	p   *parsed
}

func (r *Registry) checkSubject(subject string) error {
	if err := wire.ValidateSubject(subject); err != nil {
		return errorf(ErrInvalidSubject, "Invalid subject: %s", strings.TrimPrefix(err.Error(), wire.ErrBadSchemaRecord.Error()+": "))
	}
	return nil
}

// prepare checks a request's schema: size, type, JSON, references, and
// that it parses (unless parseIt is false: lookups only need the
// fingerprint).
func (r *Registry) prepare(ctx context.Context, s *store, req schemaRequest, normalize, parseIt bool) (candidate, error) {
	if req.Schema == "" {
		return candidate{}, errorf(ErrInvalidSchema, "Invalid schema: empty; send {\"schema\": \"<schema text>\"}")
	}
	if len(req.Schema) > r.cfg.MaxSchemaBytes {
		r.m.invalid.Inc()
		return candidate{}, errorf(ErrSchemaTooLarge, "Schema is %d bytes; this registry takes at most %d (schema_registry.max_schema_bytes)", len(req.Schema), r.cfg.MaxSchemaBytes)
	}
	typ, err := canonicalType(req.SchemaType)
	if err != nil {
		r.m.invalid.Inc()
		return candidate{}, err
	}
	text, err := compactText(req.Schema, normalize)
	if err != nil {
		r.m.invalid.Inc()
		return candidate{}, err
	}
	if len(req.References) > maxReferences {
		return candidate{}, errorf(ErrInvalidSchema, "Invalid schema: %d references; at most %d", len(req.References), maxReferences)
	}
	refs := make([]wire.SchemaReference, len(req.References))
	for i, ref := range req.References {
		if ref.Name == "" {
			return candidate{}, errorf(ErrInvalidSchema, "Invalid schema: reference %d has no name", i)
		}
		v, _, err := r.version(ref.Subject, ref.Version, true)
		if err != nil {
			return candidate{}, errorf(ErrInvalidSchema, "Invalid schema: reference %q to subject %q version %d: %s", ref.Name, ref.Subject, ref.Version, messageOf(err))
		}
		refs[i] = wire.SchemaReference{Name: ref.Name, Subject: ref.Subject, Version: v.Version}
	}
	c := candidate{
		rec: wire.SchemaRecord{V: wire.SchemaFormat, Type: typ, Schema: text, References: refs},
		fp:  wire.SchemaFingerprint(typ, text, refs),
	}
	if !parseIt {
		return c, nil
	}
	c.p, err = parse(typ, text, refs, r.resolver(ctx, s))
	if err != nil {
		r.m.invalid.Inc()
		return c, err
	}
	return c, nil
}

func messageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// resolver resolves references to registered schemas.
func (r *Registry) resolver(ctx context.Context, s *store) refResolver {
	return func(ref wire.SchemaReference) (wire.SchemaRecord, error) {
		v, _, err := r.version(ref.Subject, ref.Version, true)
		if err != nil {
			return wire.SchemaRecord{}, errorf(ErrInvalidSchema, "Invalid schema: reference %q: %s", ref.Name, messageOf(err))
		}
		return s.record(ctx, v.ID)
	}
}

// version finds a subject's version: n >= 1, or -1 for the latest live
// one. Soft-deleted versions are found only with deleted.
func (r *Registry) version(subject string, n int, deleted bool) (wire.SubjectVersion, wire.SubjectRecord, error) {
	rec, ok := r.st.subject(subject)
	if !ok || len(visible(rec.Versions, deleted, false)) == 0 {
		return wire.SubjectVersion{}, rec, errorf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
	}
	if n == -1 {
		if v, ok := rec.Latest(); ok {
			return v, rec, nil
		}
		return wire.SubjectVersion{}, rec, errorf(ErrVersionNotFound, "Subject '%s' has no live version; all are soft-deleted", subject)
	}
	for _, v := range rec.Versions {
		if v.Version == n && (deleted || !v.Deleted) {
			return v, rec, nil
		}
	}
	return wire.SubjectVersion{}, rec, errorf(ErrVersionNotFound, "Version %d not found.", n)
}

// liveVersions parses the subject's live versions, oldest first; all of
// them, or only the latest unless all is set. A transitive check parses
// every live version, so its CPU grows with them; the request timeout
// bounds it (50002).
func (r *Registry) liveVersions(ctx context.Context, s *store, rec wire.SubjectRecord, all bool) ([]version, error) {
	var out []version
	live := visible(rec.Versions, false, false)
	if !all && len(live) > 1 {
		live = live[len(live)-1:]
	}
	for _, v := range live {
		if err := ctx.Err(); err != nil {
			return nil, errorf(ErrTimeout, "parsing the versions of subject %q took too long: %v", rec.Subject, err)
		}
		sr, err := s.record(ctx, v.ID)
		if err != nil {
			return nil, err
		}
		p, err := parse(sr.Type, sr.Schema, sr.References, r.resolver(ctx, s))
		if err != nil {
			return nil, errorf(ErrStore, "version %d (ID %d) of subject %q no longer parses: %s", v.Version, v.ID, rec.Subject, messageOf(err))
		}
		out = append(out, version{version: v.Version, id: v.ID, schema: p})
	}
	return out, nil
}

// Register registers the schema under subject and returns its global ID
// and version: an existing live version if the subject already has this
// schema, else a new version after the compatibility check.
func (r *Registry) register(ctx context.Context, subject string, req schemaRequest, normalize bool) (id, ver int, err error) {
	if err := r.checkSubject(subject); err != nil {
		return 0, 0, err
	}
	s, err := r.storeFor()
	if err != nil {
		return 0, 0, err
	}
	mode := r.st.mode(subject)
	switch {
	case mode.readOnly():
		return 0, 0, errorf(ErrNotPermitted, "Subject '%s' is in %s mode; set its mode (or the global mode) to READWRITE to register", subject, mode)
	case mode == ModeImport && (req.ID <= 0 || req.Version <= 0):
		return 0, 0, errorf(ErrNotPermitted, "Subject '%s' is in IMPORT mode: a registration must give its id and version", subject)
	case mode != ModeImport && (req.ID > 0 || req.Version > 0):
		return 0, 0, errorf(ErrNotPermitted, "An id or version may only be given in IMPORT mode; subject '%s' is in %s mode", subject, mode)
	}
	c, err := r.prepare(ctx, s, req, normalize, true)
	if err != nil {
		return 0, 0, err
	}
	level := r.st.level(subject)
	var checked []wire.SubjectVersion // the live versions the last check ran against
	checkedOnce := false
	existing := 0
	rec, err := s.updateSubject(ctx, subject, func(cur wire.SubjectRecord, _ bool) (wire.SubjectRecord, bool, error) {
		existing = 0
		for i := len(cur.Versions) - 1; i >= 0; i-- {
			v := cur.Versions[i]
			if fp, _ := r.fingerprint(ctx, s, v.ID); !v.Deleted && fp == c.fp {
				existing = v.Version
				id = v.ID
				return cur, false, nil
			}
		}
		if len(cur.Versions) >= r.cfg.MaxVersions {
			return cur, false, errorf(ErrNotPermitted, "Subject '%s' has %d versions, the most schema_registry.max_versions allows; delete old versions permanently or raise it", subject, len(cur.Versions))
		}
		live := visible(cur.Versions, false, false)
		if mode != ModeImport && level != LevelNone && (!checkedOnce || !slices.Equal(live, checked)) {
			vs, err := r.liveVersions(ctx, s, cur, level.transitive())
			if err != nil {
				return cur, false, err
			}
			if msgs := checkCompat(level, c.p, vs); len(msgs) > 0 {
				r.m.refusals.Inc()
				return cur, false, errorf(ErrIncompatible, "Schema being registered is incompatible with an earlier schema for subject \"%s\", details: [%s]", subject, strings.Join(msgs, ", "))
			}
			checked, checkedOnce = live, true
		}
		if id == 0 {
			want := 0
			if mode == ModeImport {
				want = req.ID
			}
			var err error
			if id, err = s.schemaID(ctx, c.rec, want); err != nil {
				return cur, false, err
			}
		}
		next := cur
		next.Versions = slices.Clone(cur.Versions)
		v := next.NextVersion
		if mode == ModeImport {
			v = req.Version
			for _, have := range cur.Versions {
				if have.Version == v {
					return cur, false, errorf(ErrNotPermitted, "Subject '%s' already has version %d", subject, v)
				}
			}
		}
		next.Versions = append(next.Versions, wire.SubjectVersion{Version: v, ID: id})
		slices.SortFunc(next.Versions, func(a, b wire.SubjectVersion) int { return a.Version - b.Version })
		next.NextVersion = max(next.NextVersion, v+1)
		return next, true, nil
	})
	if err != nil {
		return 0, 0, err
	}
	if existing > 0 {
		return id, existing, nil
	}
	r.m.registrations.Inc()
	for i := len(rec.Versions) - 1; i >= 0; i-- {
		if rec.Versions[i].ID == id {
			ver = rec.Versions[i].Version
			break
		}
	}
	r.log.Info("schema registered", "subject", subject, "version", ver, "id", id, "type", c.rec.Type)
	return id, ver, nil
}

// fingerprint returns the fingerprint of schema id.
func (r *Registry) fingerprint(ctx context.Context, s *store, id int) (string, error) {
	if fp, ok := r.st.fingerprintOf(id); ok {
		return fp, nil
	}
	rec, err := s.record(ctx, id)
	if err != nil {
		return "", err
	}
	return wire.SchemaFingerprint(rec.Type, rec.Schema, rec.References), nil
}

// lookup finds the version of subject that holds the request's schema.
func (r *Registry) lookup(ctx context.Context, subject string, req schemaRequest, normalize, deleted bool) (wire.SubjectVersion, wire.SchemaRecord, error) {
	s, err := r.storeFor()
	if err != nil {
		return wire.SubjectVersion{}, wire.SchemaRecord{}, err
	}
	rec, ok := r.st.subject(subject)
	if !ok || len(visible(rec.Versions, deleted, false)) == 0 {
		return wire.SubjectVersion{}, wire.SchemaRecord{}, errorf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
	}
	c, err := r.prepare(ctx, s, req, normalize, false)
	if err != nil {
		return wire.SubjectVersion{}, wire.SchemaRecord{}, err
	}
	vs := visible(rec.Versions, deleted, false)
	for i := len(vs) - 1; i >= 0; i-- {
		if fp, err := r.fingerprint(ctx, s, vs[i].ID); err == nil && fp == c.fp {
			sr, err := s.record(ctx, vs[i].ID)
			return vs[i], sr, err
		}
	}
	return wire.SubjectVersion{}, wire.SchemaRecord{}, errorf(ErrSchemaNotFound, "Schema not found")
}

// checkAgainst answers a compatibility check of the request's schema
// against one version (n >= 1 or -1 for latest) or, with n == 0, against
// the versions the subject's level names.
func (r *Registry) checkAgainst(ctx context.Context, subject string, n int, req schemaRequest, normalize bool) ([]string, error) {
	s, err := r.storeFor()
	if err != nil {
		return nil, err
	}
	rec, ok := r.st.subject(subject)
	if n != 0 || ok && len(visible(rec.Versions, false, false)) > 0 {
		if !ok || len(visible(rec.Versions, false, false)) == 0 {
			return nil, errorf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
		}
	}
	c, err := r.prepare(ctx, s, req, normalize, true)
	if err != nil {
		return nil, err
	}
	level := r.st.level(subject)
	var vs []version
	if n == 0 {
		if vs, err = r.liveVersions(ctx, s, rec, level.transitive()); err != nil {
			return nil, err
		}
	} else {
		v, _, err := r.version(subject, n, false)
		if err != nil {
			return nil, err
		}
		one := rec
		one.Versions = []wire.SubjectVersion{v}
		if vs, err = r.liveVersions(ctx, s, one, false); err != nil {
			return nil, err
		}
		// Against one version: the level's direction, not its reach.
		switch level {
		case LevelBackwardTransitive:
			level = LevelBackward
		case LevelForwardTransitive:
			level = LevelForward
		case LevelFullTransitive:
			level = LevelFull
		}
	}
	return checkCompat(level, c.p, vs), nil
}
