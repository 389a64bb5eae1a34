package schema

import (
	"context"
	"encoding/json"

	"github.com/outpost-edge/outpost/core/wire"
)

// Compatibility levels and modes, global ("" subject) or per subject. A
// subject without its own has none (not an inherited copy): deleting the
// global one later changes what the subject gets.

// subjectLevel returns the level set on subject itself (global for ""),
// nil if none is set.
func (r *Registry) subjectLevel(subject string) *Level {
	r.st.mu.RLock()
	defer r.st.mu.RUnlock()
	if l, ok := r.st.configs[subject]; ok {
		return &l
	}
	return nil
}

func (r *Registry) subjectMode(subject string) *Mode {
	r.st.mu.RLock()
	defer r.st.mu.RUnlock()
	if m, ok := r.st.modes[subject]; ok {
		return &m
	}
	return nil
}

func (r *Registry) setLevel(ctx context.Context, subject string, l Level) error {
	s, err := r.storeFor()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(wire.ConfigRecord{V: wire.SchemaFormat, Compatibility: string(l)})
	if err := s.put(ctx, wire.SchemaConfigKey(subject), b); err != nil {
		return err
	}
	r.log.Info("compatibility level set", "subject", subject, "level", l)
	return nil
}

// deleteLevel removes the level set on subject (the global one: back to
// DefaultLevel) and returns the level that was in force.
func (r *Registry) deleteLevel(ctx context.Context, subject string) (Level, error) {
	s, err := r.storeFor()
	if err != nil {
		return "", err
	}
	prev := r.subjectLevel(subject)
	if prev == nil {
		if subject != "" {
			return "", errorf(ErrSubjectNoConfig, "Subject '%s' does not have subject-level compatibility configured", subject)
		}
		return DefaultLevel, nil
	}
	if err := s.del(ctx, wire.SchemaConfigKey(subject)); err != nil {
		return "", err
	}
	return *prev, nil
}

func (r *Registry) setMode(ctx context.Context, subject string, m Mode, force bool) error {
	s, err := r.storeFor()
	if err != nil {
		return err
	}
	if m == ModeImport && !force && !r.st.empty(subject) {
		what := "the registry has subjects"
		if subject != "" {
			what = "subject '" + subject + "' has versions"
		}
		return errorf(ErrNotPermitted, "Cannot import since %s; IMPORT mode is for an empty registry or subject (add ?force=true to override)", what)
	}
	b, _ := json.Marshal(wire.ModeRecord{V: wire.SchemaFormat, Mode: string(m)})
	if err := s.put(ctx, wire.SchemaModeKey(subject), b); err != nil {
		return err
	}
	r.log.Info("mode set", "subject", subject, "mode", m)
	return nil
}

func (r *Registry) deleteMode(ctx context.Context, subject string) (Mode, error) {
	s, err := r.storeFor()
	if err != nil {
		return "", err
	}
	prev := r.subjectMode(subject)
	if prev == nil {
		if subject != "" {
			return "", errorf(ErrSubjectNoMode, "Subject '%s' does not have subject-level mode configured", subject)
		}
		return DefaultMode, nil
	}
	if err := s.del(ctx, wire.SchemaModeKey(subject)); err != nil {
		return "", err
	}
	return *prev, nil
}
