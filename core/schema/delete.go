package schema

import (
	"context"
	"fmt"
	"slices"

	"github.com/outpost-edge/outpost/core/wire"
)

// Deletes. A soft delete marks versions deleted (they stay readable with
// ?deleted=true and keep their IDs); a permanent delete removes versions
// already soft-deleted. Neither frees a version number or an ID: the
// subject record keeps NextVersion, and ids.<id> stays, so a schema
// registered again gets its old ID back and a new version number.

func (r *Registry) writable(subject string) error {
	if m := r.st.mode(subject); m.readOnly() {
		return errorf(ErrNotPermitted, "Subject '%s' is in %s mode; set its mode (or the global mode) to READWRITE to delete", subject, m)
	}
	return nil
}

// referenced refuses deleting a version other schemas reference.
func (r *Registry) referenced(subject string, version int) error {
	if ids := r.st.referrers(subject, version); len(ids) > 0 {
		return errorf(ErrReferenceExists, "One or more references exist to the schema {subject=%s, version=%d}: schema IDs %v reference it; delete those first", subject, version, ids)
	}
	return nil
}

// deleteSubject deletes every version of subject and returns their
// numbers.
func (r *Registry) deleteSubject(ctx context.Context, subject string, permanent bool) ([]int, error) {
	s, err := r.storeFor()
	if err != nil {
		return nil, err
	}
	if err := r.writable(subject); err != nil {
		return nil, err
	}
	var out []int
	_, err = s.updateSubject(ctx, subject, func(cur wire.SubjectRecord, exists bool) (wire.SubjectRecord, bool, error) {
		out = nil
		if !exists || len(cur.Versions) == 0 {
			return cur, false, errorf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
		}
		next := cur
		next.Versions = nil
		for _, v := range cur.Versions {
			switch {
			case permanent && !v.Deleted:
				return cur, false, errorf(ErrSubjectNotDeleted, "Subject '%s' was not deleted first before being permanently deleted", subject)
			case permanent:
				if err := r.referenced(subject, v.Version); err != nil {
					return cur, false, err
				}
				out = append(out, v.Version)
			case !v.Deleted:
				out = append(out, v.Version)
				v.Deleted = true
				next.Versions = append(next.Versions, v)
			default:
				next.Versions = append(next.Versions, v)
			}
		}
		if !permanent && len(out) == 0 {
			return cur, false, errorf(ErrSubjectSoftDeleted, "Subject '%s' was soft deleted. Set permanent=true to delete permanently", subject)
		}
		if !permanent {
			for _, v := range out {
				if err := r.referenced(subject, v); err != nil {
					return cur, false, err
				}
			}
		}
		return next, true, nil
	})
	if err != nil {
		return nil, err
	}
	if permanent {
		// The subject's own config and mode go with it, as in Confluent.
		for _, key := range []string{wire.SchemaConfigKey(subject), wire.SchemaModeKey(subject)} {
			if _, _, found, err := s.get(ctx, key); err == nil && found {
				if err := s.del(ctx, key); err != nil {
					return out, err
				}
			}
		}
	}
	r.log.Info("subject deleted", "subject", subject, "versions", out, "permanent", permanent)
	return out, nil
}

// deleteVersion deletes one version (n >= 1, or -1 for the latest) and
// returns its number.
func (r *Registry) deleteVersion(ctx context.Context, subject string, n int, permanent bool) (int, error) {
	s, err := r.storeFor()
	if err != nil {
		return 0, err
	}
	if err := r.writable(subject); err != nil {
		return 0, err
	}
	var deleted int
	_, err = s.updateSubject(ctx, subject, func(cur wire.SubjectRecord, exists bool) (wire.SubjectRecord, bool, error) {
		if !exists || len(cur.Versions) == 0 {
			return cur, false, errorf(ErrSubjectNotFound, "Subject '%s' not found.", subject)
		}
		i := -1
		if n == -1 {
			// latest: the newest live version; for a permanent delete the
			// newest of all, which must already be soft-deleted.
			for j := len(cur.Versions) - 1; j >= 0; j-- {
				if permanent || !cur.Versions[j].Deleted {
					i = j
					break
				}
			}
		} else {
			i = slices.IndexFunc(cur.Versions, func(v wire.SubjectVersion) bool { return v.Version == n })
		}
		if i < 0 {
			return cur, false, errorf(ErrVersionNotFound, "Version %s not found.", versionName(n))
		}
		v := cur.Versions[i]
		switch {
		case permanent && !v.Deleted:
			return cur, false, errorf(ErrVersionNotDeleted, "Subject '%s' Version %d was not deleted first before being permanently deleted", subject, v.Version)
		case !permanent && v.Deleted:
			return cur, false, errorf(ErrVersionSoftDeleted, "Subject '%s' Version %d was soft deleted. Set permanent=true to delete permanently", subject, v.Version)
		}
		if err := r.referenced(subject, v.Version); err != nil {
			return cur, false, err
		}
		next := cur
		next.Versions = slices.Clone(cur.Versions)
		if permanent {
			next.Versions = slices.Delete(next.Versions, i, i+1)
		} else {
			next.Versions[i].Deleted = true
		}
		deleted = v.Version
		return next, true, nil
	})
	if err != nil {
		return 0, err
	}
	r.log.Info("subject version deleted", "subject", subject, "version", deleted, "permanent", permanent)
	return deleted, nil
}

func versionName(n int) string {
	if n == -1 {
		return "latest"
	}
	return fmt.Sprint(n)
}
