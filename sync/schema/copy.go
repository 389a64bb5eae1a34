package schema

import (
	"maps"
	"slices"

	"github.com/outpost-edge/outpost/core/wire"
)

// entry is one key of the registry bucket as the node keeps it: the raw
// value (stored as given, so a later build can re-read it) and its decoded
// form.
type entry struct {
	raw     []byte
	subject *wire.SubjectRecord // subjects.<s> keys
	schema  *wire.SchemaRecord  // ids.<id> keys
}

// nodeCopy is the node's copy of the registry: the subject records of the
// subjects it needs (its routes' subjects and, transitively, the subjects
// their schemas reference) and every schema those subjects' versions name.
// Keys are the registry bucket's (wire.SchemaSubjectKey, wire.SchemaIDKey).
type nodeCopy map[string]entry

// decodeEntry decodes a stored or watched value by its key; unknown key
// kinds are refused so the copy holds only what it understands.
func decodeEntry(key string, raw []byte) (entry, error) {
	kind, _, _, err := wire.ParseSchemaKey(key)
	if err != nil {
		return entry{}, err
	}
	switch kind {
	case wire.SchemaKeySubject:
		r, err := wire.DecodeSubjectRecord(raw)
		if err != nil {
			return entry{}, err
		}
		return entry{raw: raw, subject: &r}, nil
	case wire.SchemaKeyID:
		r, err := wire.DecodeSchemaRecord(raw)
		if err != nil {
			return entry{}, err
		}
		return entry{raw: raw, schema: &r}, nil
	}
	return entry{}, errUnexpectedKey(key)
}

// records returns the copy as the check wants it, in key order.
func (c nodeCopy) records() ([]wire.SubjectRecord, []wire.SchemaRecord) {
	var subjects []wire.SubjectRecord
	var schemas []wire.SchemaRecord
	for _, k := range slices.Sorted(maps.Keys(c)) {
		e := c[k]
		if e.subject != nil {
			subjects = append(subjects, *e.subject)
		}
		if e.schema != nil {
			schemas = append(schemas, *e.schema)
		}
	}
	return subjects, schemas
}

// want computes the copy the node should keep, from every subject record
// of the registry (subjects, by key) and the schemas known so far (have,
// plus what fetch returns). It returns the IDs it still needs fetched when
// it cannot finish; the caller fetches them and calls again.
func want(needed []string, subjects map[string]entry, have func(id int) (entry, bool)) (nodeCopy, []int) {
	out := nodeCopy{}
	var missing []int
	queue := slices.Clone(needed)
	seen := map[string]bool{}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if seen[s] {
			continue
		}
		seen[s] = true
		key := wire.SchemaSubjectKey(s)
		e, ok := subjects[key]
		if !ok {
			continue // not registered: the check reports it unknown
		}
		out[key] = e
		for _, v := range e.subject.Versions {
			se, ok := have(v.ID)
			if !ok {
				missing = append(missing, v.ID)
				continue
			}
			out[wire.SchemaIDKey(v.ID)] = se
			for _, r := range se.schema.References {
				queue = append(queue, r.Subject)
			}
		}
	}
	return out, missing
}

// diff returns what turns old into next: keys to write (new or changed)
// and keys to delete.
func diff(old, next nodeCopy) (puts map[string][]byte, deletes []string) {
	puts = map[string][]byte{}
	for k, e := range next {
		if o, ok := old[k]; !ok || string(o.raw) != string(e.raw) {
			puts[k] = e.raw
		}
	}
	for k := range old {
		if _, ok := next[k]; !ok {
			deletes = append(deletes, k)
		}
	}
	slices.Sort(deletes)
	return puts, deletes
}
