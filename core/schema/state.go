package schema

import (
	"slices"
	"strings"
	"sync"

	"github.com/outpost-edge/outpost/core/wire"
)

// state is the in-memory copy of the KV bucket that reads are served from.
// The bucket watcher applies every change to it; a registry also applies
// its own writes as soon as JetStream acknowledges them, so a client sees
// its write on the next request to the same instance (another instance
// sees it once its watcher delivers it, typically within milliseconds).
// Each key keeps the revision last applied, and an older revision never
// overwrites a newer one, so the two paths may race.
//
// Cost: about 250 bytes plus the schema text per schema ID, 50 bytes per
// fingerprint key, 200 bytes plus 40 per version per subject; the gauge
// outpost_core_schema_cache_bytes reports the value bytes held. It is
// bounded by the bucket (schema_registry.max_bytes).
type state struct {
	mu       sync.RWMutex
	schemas  map[int]wire.SchemaRecord
	fpOf     map[int]string // ID -> fingerprint, computed on apply
	subjects map[string]wire.SubjectRecord
	configs  map[string]Level // "" is global
	modes    map[string]Mode  // "" is global
	revs     map[string]uint64
	sizes    map[string]int
	bytes    int64
	nextID   int
}

func newState() *state {
	return &state{
		schemas:  map[int]wire.SchemaRecord{},
		fpOf:     map[int]string{},
		subjects: map[string]wire.SubjectRecord{},
		configs:  map[string]Level{},
		modes:    map[string]Mode{},
		revs:     map[string]uint64{},
		sizes:    map[string]int{},
	}
}

// apply records a put (or, with deleted, a delete or purge) of key at
// revision rev. It returns an error for a value it cannot decode, which
// the caller logs; the key then keeps its previous value.
func (st *state) apply(key string, value []byte, rev uint64, deleted bool) error {
	kind, id, name, err := wire.ParseSchemaKey(key)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if rev <= st.revs[key] {
		return nil
	}
	// Decode before touching anything, so a bad value changes nothing.
	var (
		srec  wire.SchemaRecord
		subj  wire.SubjectRecord
		level Level
		mode  Mode
		n     int
	)
	if !deleted {
		switch kind {
		case wire.SchemaKeyID:
			if srec, err = wire.DecodeSchemaRecord(value); err == nil && srec.ID != id {
				err = errorf(ErrStore, "key %s holds schema ID %d", key, srec.ID)
			}
		case wire.SchemaKeySubject:
			if subj, err = wire.DecodeSubjectRecord(value); err == nil && subj.Subject != name {
				err = errorf(ErrStore, "key %s holds subject %q", key, subj.Subject)
			}
		case wire.SchemaKeyConfig:
			var c wire.ConfigRecord
			if c, err = wire.DecodeConfigRecord(value); err == nil {
				var ok bool
				if level, ok = ParseLevel(c.Compatibility); !ok {
					err = errorf(ErrStore, "key %s holds compatibility %q", key, c.Compatibility)
				}
			}
		case wire.SchemaKeyMode:
			var m wire.ModeRecord
			if m, err = wire.DecodeModeRecord(value); err == nil {
				var ok bool
				if mode, ok = ParseMode(m.Mode); !ok {
					err = errorf(ErrStore, "key %s holds mode %q", key, m.Mode)
				}
			}
		case wire.SchemaKeyFingerprint, wire.SchemaKeyCounter:
			n, err = wire.ParseSchemaCounter(value)
		}
		if err != nil {
			return err
		}
	}
	st.revs[key] = rev
	st.bytes -= int64(st.sizes[key])
	if deleted {
		delete(st.sizes, key)
	} else {
		st.sizes[key] = len(value)
		st.bytes += int64(len(value))
	}
	switch kind {
	case wire.SchemaKeyID:
		if deleted {
			delete(st.schemas, id)
			delete(st.fpOf, id)
			return nil
		}
		st.schemas[id] = srec
		st.fpOf[id] = wire.SchemaFingerprint(srec.Type, srec.Schema, srec.References)
	case wire.SchemaKeySubject:
		if deleted {
			delete(st.subjects, name)
		} else {
			st.subjects[name] = subj
		}
	case wire.SchemaKeyConfig:
		if deleted {
			delete(st.configs, name)
		} else {
			st.configs[name] = level
		}
	case wire.SchemaKeyMode:
		if deleted {
			delete(st.modes, name)
		} else {
			st.modes[name] = mode
		}
	case wire.SchemaKeyCounter:
		if !deleted {
			st.nextID = n
		}
	}
	return nil
}

func (st *state) rev(key string) uint64 {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.revs[key]
}

// level returns the effective compatibility level of subject.
func (st *state) level(subject string) Level {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if l, ok := st.configs[subject]; ok && subject != "" {
		return l
	}
	if l, ok := st.configs[""]; ok {
		return l
	}
	return DefaultLevel
}

// mode returns the effective mode of subject.
func (st *state) mode(subject string) Mode {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if m, ok := st.modes[subject]; ok && subject != "" {
		return m
	}
	if m, ok := st.modes[""]; ok {
		return m
	}
	return DefaultMode
}

func (st *state) subject(name string) (wire.SubjectRecord, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	r, ok := st.subjects[name]
	return r, ok
}

func (st *state) schema(id int) (wire.SchemaRecord, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	r, ok := st.schemas[id]
	return r, ok
}

func (st *state) fingerprintOf(id int) (string, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	fp, ok := st.fpOf[id]
	return fp, ok
}

// subjectNames lists subjects with a version visible under the filters,
// sorted.
func (st *state) subjectNames(prefix string, deleted, deletedOnly bool) []string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	out := []string{}
	for name, r := range st.subjects {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		if len(visible(r.Versions, deleted, deletedOnly)) > 0 {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// visible filters versions: live ones; with deleted, soft-deleted ones too;
// with deletedOnly, only soft-deleted ones.
func visible(vs []wire.SubjectVersion, deleted, deletedOnly bool) []wire.SubjectVersion {
	var out []wire.SubjectVersion
	for _, v := range vs {
		if deletedOnly && !v.Deleted || !deletedOnly && v.Deleted && !deleted {
			continue
		}
		out = append(out, v)
	}
	return out
}

// usages lists the subject versions that use schema id, by subject then
// version.
func (st *state) usages(id int, deleted bool) []subjectVersion {
	st.mu.RLock()
	defer st.mu.RUnlock()
	var out []subjectVersion
	for name, r := range st.subjects {
		for _, v := range visible(r.Versions, deleted, false) {
			if v.ID == id {
				out = append(out, subjectVersion{Subject: name, Version: v.Version})
			}
		}
	}
	slices.SortFunc(out, func(a, b subjectVersion) int {
		if c := strings.Compare(a.Subject, b.Subject); c != 0 {
			return c
		}
		return a.Version - b.Version
	})
	return out
}

// referrers lists the IDs of schemas used by some subject version (soft
// deleted ones too) that reference subject at version.
func (st *state) referrers(subject string, version int) []int {
	st.mu.RLock()
	defer st.mu.RUnlock()
	used := map[int]bool{}
	for _, r := range st.subjects {
		for _, v := range r.Versions {
			used[v.ID] = true
		}
	}
	var out []int
	for id := range used {
		for _, ref := range st.schemas[id].References {
			if ref.Subject == subject && ref.Version == version {
				out = append(out, id)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

func (st *state) maxID() int {
	st.mu.RLock()
	defer st.mu.RUnlock()
	m := 0
	for id := range st.schemas {
		m = max(m, id)
	}
	return m
}

func (st *state) counts() (subjects, schemas int, bytes int64) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	for _, r := range st.subjects {
		if _, ok := r.Latest(); ok {
			subjects++
		}
	}
	return subjects, len(st.schemas), st.bytes
}

func (st *state) empty(subject string) bool {
	st.mu.RLock()
	defer st.mu.RUnlock()
	for name, r := range st.subjects {
		if (subject == "" || name == subject) && len(r.Versions) > 0 {
			return false
		}
	}
	return true
}

type subjectVersion struct {
	Subject string `json:"subject"`
	Version int    `json:"version"`
}
