package meta

import "errors"

// Errors of opening.
var (
	// ErrLocked: another process holds the file (bbolt's flock) and did not
	// release it within Config.Timeout. Usually a second node on the same
	// data directory.
	ErrLocked = errors.New("meta: file is locked by another process")
	// ErrCorrupt: the file is not a bbolt database or fails its checks. The
	// message names the file; the store does not try to repair it.
	ErrCorrupt = errors.New("meta: file is corrupted")
	// ErrFormat: the file or a value was written by a newer layout or value
	// version than this code knows.
	ErrFormat = errors.New("meta: unknown format version")
)

// Errors of use.
var (
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("meta: closed")
	// ErrBadName: a topic, cursor, bucket, key or site name is empty, too
	// long or has characters it may not have.
	ErrBadName = errors.New("meta: bad name")
	// ErrBadValue: a field is out of range (negative offset or partition,
	// site name, ...).
	ErrBadValue = errors.New("meta: bad value")
)
