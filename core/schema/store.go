package schema

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outpost-edge/outpost/core/wire"
)

// maxCASAttempts bounds the retries of one compare-and-set write. Each
// conflict means another registry wrote the same key meanwhile, so a
// write that loses this many times in a row is under a storm of writers;
// it fails with 50001 rather than spin.
const maxCASAttempts = 64

// store writes the bucket. Every write that must not lose a race is a KV
// create (fails if the key exists) or an update at the revision read
// (fails if someone wrote since), retried from a fresh read; every write
// is also applied to st at its revision.
type store struct {
	kv     jetstream.KeyValue
	st     *state
	bucket string
	m      *metrics
}

// storeErr turns a KV failure into the API's error, naming the bucket and
// what to do.
func (s *store) storeErr(op string, err error) error {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, jetstream.ErrNoHeartbeat) {
		return errorf(ErrTimeout, "%s in KV bucket %s timed out (is NATS reachable?): %v", op, s.bucket, err)
	}
	s.m.storeErrors.Inc()
	return errorf(ErrStore, "%s in KV bucket %s: %v (if the bucket is full, raise schema_registry.max_bytes or delete subjects permanently)", op, s.bucket, err)
}

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// get reads key; found is false for a missing or deleted key.
func (s *store) get(ctx context.Context, key string) (value []byte, rev uint64, found bool, err error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, s.storeErr("reading "+key, err)
	}
	return e.Value(), e.Revision(), true, nil
}

// cas writes value at key if the key is still at rev (0: absent), and
// applies it to the state.
func (s *store) cas(ctx context.Context, key string, value []byte, rev uint64) error {
	var err error
	var newRev uint64
	if rev == 0 {
		newRev, err = s.kv.Create(ctx, key, value)
	} else {
		newRev, err = s.kv.Update(ctx, key, value, rev)
	}
	if err != nil {
		return err
	}
	_ = s.st.apply(key, value, newRev, false)
	return nil
}

// put writes value at key unconditionally (last writer wins: configs and
// modes) and applies it.
func (s *store) put(ctx context.Context, key string, value []byte) error {
	rev, err := s.kv.Put(ctx, key, value)
	if err != nil {
		return s.storeErr("writing "+key, err)
	}
	_ = s.st.apply(key, value, rev, false)
	return nil
}

// del deletes key and applies the deletion. Delete does not return the
// marker's revision; the state records the deletion just past the
// revision it holds, which every later write (the marker included, when
// the watcher delivers it) is above.
func (s *store) del(ctx context.Context, key string) error {
	if err := s.kv.Delete(ctx, key); err != nil {
		return s.storeErr("deleting "+key, err)
	}
	_ = s.st.apply(key, nil, s.st.rev(key)+1, true)
	return nil
}

// allocateID hands out the next schema ID: meta.next-id is read and
// advanced by compare-and-set, so concurrent registries never get the
// same ID, and IDs only grow.
func (s *store) allocateID(ctx context.Context) (int, error) {
	for range maxCASAttempts {
		v, rev, found, err := s.get(ctx, wire.SchemaKeyNextID)
		if err != nil {
			return 0, err
		}
		next := 1
		if found {
			if next, err = wire.ParseSchemaCounter(v); err != nil {
				return 0, s.storeErr("reading "+wire.SchemaKeyNextID, err)
			}
		}
		err = s.cas(ctx, wire.SchemaKeyNextID, []byte(strconv.Itoa(next+1)), rev)
		if err == nil {
			return next, nil
		}
		if !isConflict(err) {
			return 0, s.storeErr("advancing "+wire.SchemaKeyNextID, err)
		}
		s.m.casConflicts.Inc()
	}
	return 0, errorf(ErrStore, "allocating a schema ID in KV bucket %s: %d conflicting writers in a row", s.bucket, maxCASAttempts)
}

// raiseNextID makes sure IDs handed out later are above id (after an
// import with explicit IDs).
func (s *store) raiseNextID(ctx context.Context, id int) error {
	for range maxCASAttempts {
		v, rev, found, err := s.get(ctx, wire.SchemaKeyNextID)
		if err != nil {
			return err
		}
		next := 1
		if found {
			if next, err = wire.ParseSchemaCounter(v); err != nil {
				return s.storeErr("reading "+wire.SchemaKeyNextID, err)
			}
		}
		if next > id {
			return nil
		}
		err = s.cas(ctx, wire.SchemaKeyNextID, []byte(strconv.Itoa(id+1)), rev)
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return s.storeErr("advancing "+wire.SchemaKeyNextID, err)
		}
		s.m.casConflicts.Inc()
	}
	return errorf(ErrStore, "advancing %s in KV bucket %s: %d conflicting writers in a row", wire.SchemaKeyNextID, s.bucket, maxCASAttempts)
}

// schemaID returns the ID of rec's schema, creating it if the schema is
// new. The fingerprint key is created before the schema record: of two
// registries registering the same new schema at once, one creates the
// fingerprint and the other adopts its ID (the ID it allocated is never
// used; IDs may have gaps, never duplicates). A registry that died between
// the two creates leaves a fingerprint without a record; the next one to
// register that schema writes the record.
func (s *store) schemaID(ctx context.Context, rec wire.SchemaRecord, wantID int) (int, error) {
	fp := wire.SchemaFingerprint(rec.Type, rec.Schema, rec.References)
	fpKey := wire.SchemaFingerprintKey(fp)
	for range maxCASAttempts {
		v, _, found, err := s.get(ctx, fpKey)
		if err != nil {
			return 0, err
		}
		if found {
			id, err := wire.ParseSchemaCounter(v)
			if err != nil {
				return 0, s.storeErr("reading "+fpKey, err)
			}
			if wantID > 0 && id != wantID {
				return 0, errorf(ErrIDMismatch, "this schema is already registered with ID %d, not %d", id, wantID)
			}
			return id, s.ensureRecord(ctx, rec, id)
		}
		id := wantID
		if id == 0 {
			if id, err = s.allocateID(ctx); err != nil {
				return 0, err
			}
		} else if err := s.checkFreeID(ctx, id, fp); err != nil {
			return 0, err
		}
		err = s.cas(ctx, fpKey, []byte(strconv.Itoa(id)), 0)
		if isConflict(err) {
			s.m.casConflicts.Inc()
			continue // someone registered it meanwhile: adopt theirs
		}
		if err != nil {
			return 0, s.storeErr("creating "+fpKey, err)
		}
		if err := s.ensureRecord(ctx, rec, id); err != nil {
			return 0, err
		}
		if wantID > 0 {
			return id, s.raiseNextID(ctx, id)
		}
		return id, nil
	}
	return 0, errorf(ErrStore, "registering a schema in KV bucket %s: %d conflicting writers in a row", s.bucket, maxCASAttempts)
}

// checkFreeID refuses an imported ID already taken by another schema.
func (s *store) checkFreeID(ctx context.Context, id int, fp string) error {
	v, _, found, err := s.get(ctx, wire.SchemaIDKey(id))
	if err != nil || !found {
		return err
	}
	other, err := wire.DecodeSchemaRecord(v)
	if err != nil {
		return s.storeErr("reading "+wire.SchemaIDKey(id), err)
	}
	if wire.SchemaFingerprint(other.Type, other.Schema, other.References) != fp {
		return errorf(ErrIDMismatch, "ID %d is already taken by another schema", id)
	}
	return nil
}

// ensureRecord creates ids.<id> unless it exists.
func (s *store) ensureRecord(ctx context.Context, rec wire.SchemaRecord, id int) error {
	if _, ok := s.st.schema(id); ok {
		return nil
	}
	rec.V, rec.ID = wire.SchemaFormat, id
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	err = s.cas(ctx, wire.SchemaIDKey(id), b, 0)
	if err != nil && !isConflict(err) {
		return s.storeErr("creating "+wire.SchemaIDKey(id), err)
	}
	return nil
}

// updateSubject applies change to the subject's record by compare-and-set,
// retrying from a fresh read when another registry wrote it meanwhile.
// change gets the current record (exists false: a zero one to fill) and
// returns the record to write, or write false to leave it (its error, if
// any, is returned).
func (s *store) updateSubject(ctx context.Context, subject string, change func(cur wire.SubjectRecord, exists bool) (next wire.SubjectRecord, write bool, err error)) (wire.SubjectRecord, error) {
	key := wire.SchemaSubjectKey(subject)
	for range maxCASAttempts {
		v, rev, found, err := s.get(ctx, key)
		if err != nil {
			return wire.SubjectRecord{}, err
		}
		cur := wire.SubjectRecord{V: wire.SchemaFormat, Subject: subject, NextVersion: 1}
		if found {
			if cur, err = wire.DecodeSubjectRecord(v); err != nil {
				return cur, s.storeErr("reading "+key, err)
			}
		}
		next, write, err := change(cur, found)
		if err != nil || !write {
			return next, err
		}
		next.V, next.Subject = wire.SchemaFormat, subject
		b, err := json.Marshal(next)
		if err != nil {
			return next, err
		}
		err = s.cas(ctx, key, b, rev)
		if err == nil {
			return next, nil
		}
		if !isConflict(err) {
			return next, s.storeErr("writing "+key, err)
		}
		s.m.casConflicts.Inc()
	}
	return wire.SubjectRecord{}, errorf(ErrStore, "updating subject %q in KV bucket %s: %d conflicting writers in a row", subject, s.bucket, maxCASAttempts)
}

// record reads schema id from the state, or from the bucket when this
// registry's watcher has not delivered it yet.
func (s *store) record(ctx context.Context, id int) (wire.SchemaRecord, error) {
	if r, ok := s.st.schema(id); ok {
		return r, nil
	}
	v, rev, found, err := s.get(ctx, wire.SchemaIDKey(id))
	if err != nil {
		return wire.SchemaRecord{}, err
	}
	if !found {
		return wire.SchemaRecord{}, errorf(ErrSchemaNotFound, "Schema %d not found", id)
	}
	r, err := wire.DecodeSchemaRecord(v)
	if err != nil {
		return r, s.storeErr(fmt.Sprintf("reading schema %d", id), err)
	}
	_ = s.st.apply(wire.SchemaIDKey(id), v, rev, false)
	return r, nil
}
